#!/usr/bin/env bash
# End-to-end test of the Python client against a real berth.
#
#   clients/python/test.sh
#
# Creates a venv in a temp dir (or uses/creates $BERTH_PY_VENV), installs
# requirements.txt, checks the generated stubs are fresh, starts berth
# ($BERTH_BIN, else $CARGO_TARGET_DIR/debug/berth, else
# /work/target/debug/berth) on a free loopback port with a temp SQLite
# database, creates a Harbor registry through the stubs and runs example.py.
# Ends with `pyclient: N passed, M failed`; exits 1 if anything failed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -n "${BERTH_BIN:-}" ]]; then
  berth_bin="$BERTH_BIN"
elif [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
  berth_bin="$CARGO_TARGET_DIR/debug/berth"
else
  berth_bin=/work/target/debug/berth
fi
[[ -x "$berth_bin" ]] || { echo "test.sh: no berth binary at $berth_bin (set BERTH_BIN)" >&2; exit 1; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/berth-pyclient.XXXXXX")"
berth_pid=""
cleanup() {
  if [[ -n "$berth_pid" ]]; then
    kill "$berth_pid" 2>/dev/null || true
    wait "$berth_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1" >&2; }

# --- Python environment ----------------------------------------------------
venv="${BERTH_PY_VENV:-$tmp/venv}"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv" || { echo "test.sh: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
fi
py="$venv/bin/python"
"$py" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"

if PYTHON="$py" "$here/generate.sh" --check; then
  pass "generate.sh --check"
else
  fail "generate.sh --check: stubs are stale"
fi

# --- berth -------------------------------------------------------------------
# A copy, so a rebuild of the binary during the test cannot pull it away.
cp "$berth_bin" "$tmp/berth"
port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
addr="127.0.0.1:$port"
env -u BERTH_SECRET_KEY -u BERTH_SECRET_KEY_FILE -u BERTH_ECR_ENDPOINT -u BERTH_ACR_ENDPOINT -u BERTH_TCR_ENDPOINT \
  BERTH_LISTEN="$addr" BERTH_DATABASE_URL="sqlite://$tmp/b.db?mode=rwc" BERTH_LOG_FORMAT=json \
  "$tmp/berth" serve >"$tmp/berth.log" 2>&1 &
berth_pid=$!

# Waits until berth serves, then creates the registry; prints its id.
create_registry() {
  (cd "$here" && "$py" - "$addr" "$berth_pid" <<'PY'
import os, sys, time

import grpc
from berth_client import ACTOR_HEADER
from berth_client.berth.v1 import registry_pb2, registry_pb2_grpc, types_pb2

addr, pid = sys.argv[1], int(sys.argv[2])
metadata = ((ACTOR_HEADER, "py-test"),)
with grpc.insecure_channel(addr) as channel:
    registries = registry_pb2_grpc.RegistryServiceStub(channel)
    # berth answers UNAVAILABLE until its database is migrated; a project
    # without a default registry is NOT_FOUND once it serves.
    deadline = time.monotonic() + 30
    while True:
        try:
            registries.GetDefaultRegistry(
                registry_pb2.GetDefaultRegistryRequest(project="web"),
                metadata=metadata, timeout=2)
            sys.exit("a fresh berth already has a default registry")
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                break
            if err.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit("berth exited during startup")
        time.sleep(0.1)

    registry = registries.CreateRegistry(
        registry_pb2.CreateRegistryRequest(registry=registry_pb2.Registry(
            provider=types_pb2.HARBOR,
            address="harbor.example.com",
            namespace="team",
            username="robot",
            secret="pw",
            scope=types_pb2.Scope(all_projects=True),
        )),
        metadata=metadata, timeout=10)
    assert registry.is_default, registry
    assert registry.updated_by == "py-test", registry
    print(registry.id)
PY
  )
}

if registry_id="$(create_registry)"; then
  pass "CreateRegistry HARBOR harbor.example.com/team (default) -> $registry_id"
else
  fail "CreateRegistry (berth log follows)"
  cat "$tmp/berth.log" >&2
  echo "pyclient: $passed passed, $failed failed"
  exit 1
fi

# --- example.py, the happy path ---------------------------------------------
secret_file="$tmp/pull-secret.yaml"
if out="$("$py" "$here/example.py" --addr "$addr" --project web --service api \
      --tag 1.4.2 --namespace apps --out "$secret_file" 2>&1)"; then
  pass "example.py exits 0"
else
  fail "example.py exited $?"
fi
printf '%s\n' "$out" | sed 's/^/     | /'

reference="$(printf '%s\n' "$out" | sed -n 's/^image: //p')"
if [[ "$reference" == "harbor.example.com/team/api:1.4.2" ]]; then
  pass "image reference $reference"
else
  fail "image reference: got '$reference', want harbor.example.com/team/api:1.4.2"
fi

name="$(printf '%s\n' "$out" | sed -n 's/^secret: //p')"
if [[ -n "$name" ]] && grep -Fqx "  name: \"$name\"" "$secret_file" 2>/dev/null; then
  pass "secret name $name matches the manifest"
else
  fail "secret name '$name' not printed or not in the manifest"
fi

if grep -Fqx 'type: kubernetes.io/dockerconfigjson' "$secret_file" 2>/dev/null; then
  pass "manifest type: kubernetes.io/dockerconfigjson"
else
  fail "manifest lacks 'type: kubernetes.io/dockerconfigjson'"
fi

if grep -Fqx '  namespace: "apps"' "$secret_file" 2>/dev/null; then
  pass 'manifest namespace: "apps"'
else
  fail "manifest lacks '  namespace: \"apps\"'"
fi

if "$py" - "$secret_file" <<'PY'
import base64, json, re, sys

text = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r'^  \.dockerconfigjson: "([A-Za-z0-9+/=]+)"$', text, re.M)
assert m, "no .dockerconfigjson in the manifest"
config = json.loads(base64.b64decode(m.group(1), validate=True))
got = config["auths"]["harbor.example.com"]["auth"]
want = base64.b64encode(b"robot:pw").decode()
assert got == want, f"auth {got!r} != {want!r}"
PY
then
  pass '.dockerconfigjson auths["harbor.example.com"].auth == base64("robot:pw")'
else
  fail ".dockerconfigjson does not hold robot:pw for harbor.example.com"
fi

# --- example.py, an invalid project -------------------------------------------
rc=0
bad="$("$py" "$here/example.py" --addr "$addr" --project "bad project" --service api \
  --tag 1.4.2 --namespace apps --out "$tmp/bad.yaml" 2>&1)" || rc=$?
printf '%s\n' "$bad" | sed 's/^/     | /'
if [[ $rc -eq 1 ]] && grep -q 'INVALID_ARGUMENT' <<<"$bad" && grep -q '^  field project: ' <<<"$bad" \
    && [[ ! -e "$tmp/bad.yaml" ]]; then
  pass "invalid project: exit 1, INVALID_ARGUMENT, BadRequest field project"
else
  fail "invalid project: exit $rc (want 1, INVALID_ARGUMENT and 'field project:')"
fi

echo "pyclient: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
