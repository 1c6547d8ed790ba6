// Command example does what a workflow runner does with berth before a
// build: find the project's default registry, resolve the image reference
// to push, and write a docker config.json holding the registry login.
//
//	example -addr 127.0.0.1:50051 -project web -service api \
//	    -tag-template '{TASK_ID}-{BRANCH}' -task-id 42 -branch feature/login \
//	    -out config.json
//
// Prints `registry: <id> (<provider> <address>)`, `image: <reference>` and
// `wrote: <file>` lines. On a gRPC error it prints the status code, the
// message and any google.rpc.BadRequest field violations to stderr and
// exits 1.
//
// Build it in GOPATH mode (see ../README.md):
//
//	GO111MODULE=off GOPATH="$PWD:/usr/share/gocode" go build -o example ./example
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	berthv1 "berth.dev/berth/clients/go/berthv1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// actorHeader names the caller in berth's audit fields (updated_by).
const actorHeader = "x-berth-actor"

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "berth gRPC address (host:port, plaintext)")
	project := flag.String("project", "", "project key (required)")
	service := flag.String("service", "", "service name or repository path below the registry's namespace (required)")
	tagTemplate := flag.String("tag-template", "{TIMESTAMP}-{TASK_ID}-{BRANCH}", "tag or tag template")
	taskID := flag.String("task-id", "", "value of the TASK_ID template variable")
	branch := flag.String("branch", "", "value of the BRANCH template variable")
	out := flag.String("out", "config.json", "where to write the docker config.json (mode 0600)")
	timeout := flag.Duration("timeout", 30*time.Second, "deadline for the whole run")
	flag.Parse()
	if *project == "" || *service == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: example -project P -service S [flags]")
		flag.PrintDefaults()
		os.Exit(2)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, actorHeader, "go-example")

	// grpc-go 1.33 (Debian 12): WithInsecure is plaintext; use
	// grpc.WithTransportCredentials for a TLS-terminated berth.
	conn, err := grpc.DialContext(ctx, *addr, grpc.WithInsecure())
	if err != nil {
		fail("dial "+*addr, err)
	}
	defer conn.Close()
	registries := berthv1.NewRegistryServiceClient(conn)
	images := berthv1.NewImageServiceClient(conn)

	// (a) The project's default registry.
	reg, err := registries.GetDefaultRegistry(ctx, &berthv1.GetDefaultRegistryRequest{Project: *project})
	if err != nil {
		fail("GetDefaultRegistry", err)
	}
	fmt.Printf("registry: %s (%s %s)\n", reg.GetId(), reg.GetProvider(), reg.GetAddress())

	// (b) The image reference to push, from the tag template.
	vars := map[string]string{}
	if *taskID != "" {
		vars["TASK_ID"] = *taskID
	}
	if *branch != "" {
		vars["BRANCH"] = *branch
	}
	resolved, err := images.ResolveImage(ctx, &berthv1.ResolveImageRequest{
		RegistryId: reg.GetId(),
		Project:    *project,
		Image:      *service,
		Tag:        *tagTemplate,
		Variables:  vars,
	})
	if err != nil {
		fail("ResolveImage", err)
	}
	fmt.Printf("image: %s\n", resolved.GetReference())

	// (c) Credentials for that registry, as a docker config.json.
	creds, err := images.GetCredentials(ctx, &berthv1.GetCredentialsRequest{
		RegistryId: resolved.GetRegistryId(),
		Project:    *project,
	})
	if err != nil {
		fail("GetCredentials", err)
	}
	if err := writePrivate(*out, []byte(creds.GetDockerConfigJson())); err != nil {
		fmt.Fprintf(os.Stderr, "error: write %s: %v\n", *out, err)
		os.Exit(1)
	}
	abs, err := filepath.Abs(*out)
	if err != nil {
		abs = *out
	}
	fmt.Printf("wrote: %s\n", abs)
}

// writePrivate writes data to path with mode 0600, also when path already
// exists with a wider mode, via a temporary file renamed into place.
func writePrivate(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".config.json-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// fail prints a gRPC error's code, message and field violations, and exits 1.
func fail(what string, err error) {
	st := status.Convert(err)
	fmt.Fprintf(os.Stderr, "error: %s: %s: %s\n", what, st.Code(), st.Message())
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fmt.Fprintf(os.Stderr, "  field %s: %s\n", v.GetField(), v.GetDescription())
			}
		}
	}
	os.Exit(1)
}
