#!/usr/bin/env bash
# Generates the Go stubs for berth's protos into the GOPATH tree under this
# directory: src/berth.dev/berth/clients/go/berthv1/ (package berthv1).
#
#   ./generate.sh          regenerate
#   ./generate.sh --check  fail if the checked-in stubs are stale
#
# Needs Debian 12's protobuf-compiler, protoc-gen-go and protoc-gen-go-grpc
# (the versions below: the generated files name them, so other versions
# would make --check fail for the wrong reason). The .proto files carry no
# go_package option; the import path is given with protoc's M flags.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto_root="$here/../../proto"
import_path="berth.dev/berth/clients/go/berthv1"
out_dir="$here/src/$import_path"

want_protoc="libprotoc 3.21.12"
want_gen_go="protoc-gen-go v1.28.1"
want_gen_grpc="protoc-gen-go-grpc 1.0"

check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

need() { # need TOOL WANT-VERSION DEBIAN-PACKAGE
  local have
  if ! command -v "$1" >/dev/null; then
    echo "generate.sh: $1 not found; run: apt-get install -y $3" >&2
    exit 1
  fi
  have="$("$1" --version 2>&1 | head -n1)"
  if [[ "$have" != "$2" ]]; then
    echo "generate.sh: $1 is '$have', want '$2' (Debian 12's $3)" >&2
    exit 1
  fi
}
need protoc "$want_protoc" protobuf-compiler
need protoc-gen-go "$want_gen_go" protoc-gen-go
need protoc-gen-go-grpc "$want_gen_grpc" protoc-gen-go-grpc

protos=()
while IFS= read -r f; do protos+=("$f"); done < <(cd "$proto_root" && find berth -name '*.proto' | LC_ALL=C sort)
if (( ${#protos[@]} == 0 )); then
  echo "generate.sh: no .proto files under $proto_root/berth" >&2
  exit 1
fi

# Every berth proto maps to the one Go package.
go_opts=() grpc_opts=()
for f in "${protos[@]}"; do
  go_opts+=("--go_opt=M$f=$import_path;berthv1")
  grpc_opts+=("--go-grpc_opt=M$f=$import_path;berthv1")
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Relative paths (-I . and berth/v1/x.proto) keep the `source:` comments
# free of this clone's location.
(cd "$proto_root" && protoc -I . \
  --go_out="$tmp" --go_opt=paths=import "${go_opts[@]}" \
  --go-grpc_out="$tmp" --go-grpc_opt=paths=import "${grpc_opts[@]}" \
  "${protos[@]}")
gen="$tmp/$import_path"

if (( check )); then
  if [[ ! -d "$out_dir" ]] || ! diff -r "$gen" "$out_dir"; then
    echo "generate.sh --check: $out_dir is stale; run clients/go/generate.sh" >&2
    exit 1
  fi
  echo "generate.sh --check: Go stubs are up to date"
else
  rm -rf "$out_dir"
  mkdir -p "$(dirname "$out_dir")"
  cp -r "$gen" "$out_dir"
  echo "generated $(find "$out_dir" -type f | wc -l) files into $out_dir"
fi
