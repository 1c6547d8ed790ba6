#!/usr/bin/env bash
# Generates the Python stubs for berth's protos into berth_client/berth/v1/.
#
#   ./generate.sh          regenerate (needs grpcio-tools from requirements.txt)
#   ./generate.sh --check  fail if the checked-in stubs are stale
#
# PYTHON selects the interpreter (default: python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto_root="$here/../../proto"
out_pkg="$here/berth_client"
python="${PYTHON:-python3}"

check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

# The generated files name the grpcio(-tools) version that made them, so a
# different grpcio-tools would make --check fail for the wrong reason.
want="$(sed -n 's/^grpcio-tools==\([^[:space:]]*\).*/\1/p' "$here/requirements.txt")"
have="$("$python" -c 'import importlib.metadata as m; print(m.version("grpcio-tools"))' 2>/dev/null || true)"
if [[ -z "$have" ]]; then
  echo "generate.sh: grpcio-tools is not installed for $python; run: $python -m pip install -r $here/requirements.txt" >&2
  exit 1
fi
if [[ "$have" != "$want" ]]; then
  echo "generate.sh: grpcio-tools $have is installed, requirements.txt pins $want" >&2
  exit 1
fi

# generate DIR: writes DIR/berth/__init__.py, DIR/berth/v1/{__init__.py,*_pb2*.py,*.pyi}
generate() {
  local dest="$1"
  mkdir -p "$dest"
  local protos=()
  while IFS= read -r f; do protos+=("$f"); done < <(cd "$proto_root" && find berth -name '*.proto' | LC_ALL=C sort)
  (cd "$proto_root" && "$python" -m grpc_tools.protoc -I . \
    --python_out="$dest" --pyi_out="$dest" --grpc_python_out="$dest" "${protos[@]}")
  # grpc_tools writes absolute imports of the proto package (`from berth.v1
  # import types_pb2`); the package lives under berth_client.
  find "$dest" \( -name '*.py' -o -name '*.pyi' \) -print0 | LC_ALL=C sort -z |
    xargs -0 sed -i -E \
      -e 's/^(from|import) berth\.v1( |\.|$)/\1 berth_client.berth.v1\2/' \
      -e "s/(BuildTopDescriptorsAndMessages\(DESCRIPTOR, ')berth\.v1\./\1berth_client.berth.v1./"
  printf '"""Generated from proto/berth by clients/python/generate.sh. Do not edit."""\n' \
    | tee "$dest/berth/__init__.py" > "$dest/berth/v1/__init__.py"
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
generate "$tmp"

if (( check )); then
  if ! diff -r -x __pycache__ "$tmp/berth" "$out_pkg/berth"; then
    echo "generate.sh --check: berth_client/berth is stale; run clients/python/generate.sh" >&2
    exit 1
  fi
  echo "generate.sh --check: stubs are up to date"
else
  rm -rf "$out_pkg/berth"
  cp -r "$tmp/berth" "$out_pkg/berth"
  echo "generated $(cd "$out_pkg/berth" && find . -type f | wc -l) files into $out_pkg/berth"
fi
