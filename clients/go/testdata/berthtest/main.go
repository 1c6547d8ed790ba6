// Command berthtest holds the helpers clients/go/test.sh needs besides the
// example, so the test needs neither grpcurl nor jq. It lives under testdata
// so that `go ... ./...` skips it.
//
//	berthtest free-port
//	    prints a free loopback TCP port
//	berthtest wait -addr A [-timeout 30s]
//	    waits until berth's grpc.health.v1 Health answers SERVING
//	berthtest create-registry -addr A -provider HARBOR -address H \
//	    -namespace N -username U -secret S [-projects a,b] [-default]
//	    creates a registry (scope: all projects unless -projects), prints its id
//	berthtest check-config -file F -server S -username U -password P
//	    checks a docker config.json: mode 0600 and
//	    auths[S].auth == base64("U:P")
//
// Exits 1 with a message on stderr when anything fails (gRPC errors as
// code, message and field violations).
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	berthv1 "berth.dev/berth/clients/go/berthv1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func main() {
	if len(os.Args) < 2 {
		fatalf("usage: berthtest free-port|wait|create-registry|check-config [flags]")
	}
	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case "free-port":
		freePort()
	case "wait":
		wait(args)
	case "create-registry":
		createRegistry(args)
	case "check-config":
		checkConfig(args)
	default:
		fatalf("berthtest: unknown command %q", cmd)
	}
}

func freePort() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatalf("free-port: %v", err)
	}
	defer l.Close()
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
}

func dial(ctx context.Context, addr string) *grpc.ClientConn {
	conn, err := grpc.DialContext(ctx, addr, grpc.WithInsecure())
	if err != nil {
		fatalf("dial %s: %v", addr, err)
	}
	return conn
}

func wait(args []string) {
	fs := flag.NewFlagSet("wait", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:50051", "berth gRPC address")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait")
	fs.Parse(args)

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	conn := dial(ctx, *addr)
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	var last string
	for {
		callCtx, callCancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := health.Check(callCtx, &healthpb.HealthCheckRequest{})
		callCancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		if err != nil {
			last = status.Convert(err).Code().String() + ": " + status.Convert(err).Message()
		} else {
			last = resp.GetStatus().String()
		}
		select {
		case <-ctx.Done():
			fatalf("wait: berth at %s not SERVING after %s (last: %s)", *addr, *timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func createRegistry(args []string) {
	fs := flag.NewFlagSet("create-registry", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:50051", "berth gRPC address")
	provider := fs.String("provider", "HARBOR", "provider enum name, e.g. HARBOR")
	address := fs.String("address", "", "registry address")
	namespace := fs.String("namespace", "", "namespace")
	username := fs.String("username", "", "username")
	secret := fs.String("secret", "", "secret")
	projects := fs.String("projects", "", "comma-separated project keys; empty means all projects")
	isDefault := fs.Bool("default", false, "make it the default (the first registry becomes it anyway)")
	fs.Parse(args)

	p, ok := berthv1.Provider_value[*provider]
	if !ok {
		fatalf("create-registry: unknown provider %q", *provider)
	}
	scope := &berthv1.Scope{AllProjects: *projects == ""}
	if *projects != "" {
		scope.Projects = strings.Split(*projects, ",")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-berth-actor", "go-berthtest")
	conn := dial(ctx, *addr)
	defer conn.Close()
	reg, err := berthv1.NewRegistryServiceClient(conn).CreateRegistry(ctx, &berthv1.CreateRegistryRequest{
		Registry: &berthv1.Registry{
			Provider:  berthv1.Provider(p),
			Address:   *address,
			Namespace: *namespace,
			Username:  *username,
			Secret:    *secret,
			IsDefault: *isDefault,
			Scope:     scope,
		},
	})
	if err != nil {
		rpcFail("CreateRegistry", err)
	}
	fmt.Println(reg.GetId())
}

func checkConfig(args []string) {
	fs := flag.NewFlagSet("check-config", flag.ExitOnError)
	file := fs.String("file", "", "config.json to check")
	server := fs.String("server", "", "expected auths key")
	username := fs.String("username", "", "expected username")
	password := fs.String("password", "", "expected password")
	fs.Parse(args)

	fi, err := os.Stat(*file)
	if err != nil {
		fatalf("check-config: %v", err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		fatalf("check-config: %s has mode %04o, want 0600", *file, mode)
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		fatalf("check-config: %v", err)
	}
	var cfg struct {
		Auths map[string]struct {
			Auth string `json:"auth"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		fatalf("check-config: %s is not a docker config.json: %v\n%s", *file, err, data)
	}
	entry, ok := cfg.Auths[*server]
	if !ok {
		fatalf("check-config: %s has no auths[%q]:\n%s", *file, *server, data)
	}
	want := base64.StdEncoding.EncodeToString([]byte(*username + ":" + *password))
	if entry.Auth != want {
		fatalf("check-config: auths[%q].auth = %q, want %q (base64 of %s:<password>)", *server, entry.Auth, want, *username)
	}
	fmt.Printf("config ok: %s (0600, auths[%q])\n", *file, *server)
}

func rpcFail(what string, err error) {
	st := status.Convert(err)
	msg := fmt.Sprintf("error: %s: %s: %s", what, st.Code(), st.Message())
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				msg += fmt.Sprintf("\n  field %s: %s", v.GetField(), v.GetDescription())
			}
		}
	}
	fatalf("%s", msg)
}

func fatalf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
