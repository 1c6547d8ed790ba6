#!/usr/bin/env bash
# Validates everything in deploy/ offline and exits non-zero on any finding:
#
#   1. YAML syntax of every manifest and compose.yaml (duplicate keys fail)
#   2. renders each kustomization (base, overlays/*) with `kustomize build`,
#      else `kubectl kustomize`, else deploy/validate.py's small renderer;
#      when a real renderer is there, the small one must agree with it
#   3. kubernetes-validate --strict of every rendered object (and
#      secret.example.yaml) against pinned Kubernetes versions, using the
#      schemas bundled in the package; unknown kinds and fields fail
#   4. wiring of the rendered objects (selectors, ports, references, probes)
#   5. checkov on deploy/kubernetes, the renders and the Dockerfile: any
#      failed check fails, except those skipped in the files themselves with
#      a reason (`checkov.io/skipN` annotations, `# checkov:skip=` comments)
#   6. hadolint and the image contract of deploy/Dockerfile
#   7. compose.yaml structure (no docker engine here for `docker compose
#      config`)
#
# The Python tools (deploy/requirements.txt, pinned) live in a venv under
# ${XDG_CACHE_HOME:-$HOME/.cache}/berth-deploy-venv, created on first use and
# rebuilt when requirements.txt changes; later runs need no network.
#
# Environment:
#   BERTH_K8S_VERSIONS   Kubernetes versions to validate against
#                        (default "1.30.0 1.37.0": the oldest the manifests
#                        support, and the newest the pinned package knows)
#   BERTH_KUSTOMIZE      force a renderer: kustomize, kubectl or python
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}"
venv="$cache/berth-deploy-venv"
k8s_versions="${BERTH_K8S_VERSIONS:-1.30.0 1.37.0}"
started=$SECONDS

log() { printf '\n==> %s\n' "$*"; }
die() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

# --- tools -------------------------------------------------------------------
mkdir -p "$cache"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
(
  flock 9
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c '' 2>/dev/null ||
     [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
    log "installing deploy/requirements.txt into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
    echo "$want" > "$venv/.requirements.sha256"
  fi
) 9>"$cache/berth-deploy-venv.lock"
py="$venv/bin/python"
check() { "$py" "$here/validate.py" "$@"; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- 1. YAML ------------------------------------------------------------------
log "YAML syntax"
mapfile -t yamls < <(find "$here/kubernetes" -name '*.yaml' | sort)
check yaml "${yamls[@]}" "$here/compose.yaml" || die "YAML syntax"

# --- 2. render ------------------------------------------------------------------
renderer="${BERTH_KUSTOMIZE:-}"
if [ -z "$renderer" ]; then
  if command -v kustomize >/dev/null; then renderer=kustomize
  elif command -v kubectl >/dev/null; then renderer=kubectl
  else renderer=python
  fi
fi
render() {
  case "$1" in
    kustomize) kustomize build "$2" ;;
    kubectl) kubectl kustomize "$2" ;;
    python) check render "$2" ;;
    *) die "BERTH_KUSTOMIZE=$1: use kustomize, kubectl or python" ;;
  esac
}
mkdir -p "$work/rendered"
targets=("$here/kubernetes/base")
for d in "$here"/kubernetes/overlays/*/; do targets+=("${d%/}"); done
for t in "${targets[@]}"; do
  name="$(basename "$t")"
  log "render kubernetes/${t#"$here/kubernetes/"} ($renderer)"
  render "$renderer" "$t" > "$work/rendered/$name.yaml" || die "rendering $t"
  grep -c '^kind:' "$work/rendered/$name.yaml" | xargs printf '    %s objects\n'
  if [ "$renderer" != python ]; then
    # Keep the fallback renderer honest where it can be compared.
    # It implements only what these manifests use: a kustomization using
    # more must extend it, or machines without kustomize/kubectl break.
    check render "$t" > "$work/$name.python.yaml" ||
      die "deploy/validate.py cannot render $t (see above)"
    check same "$work/rendered/$name.yaml" "$work/$name.python.yaml" ||
      die "deploy/validate.py renders $t differently from $renderer: fix deploy/validate.py"
  fi
done

# --- 3. schemas -------------------------------------------------------------------
for v in $k8s_versions; do
  log "kubernetes-validate --strict, Kubernetes $v"
  if ! "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" \
      "$work"/rendered/*.yaml "$here/kubernetes/base/secret.example.yaml" > "$work/kv.txt" 2>&1; then
    cat "$work/kv.txt"; die "kubernetes-validate (Kubernetes $v)"
  fi
  # Unknown kinds are only a warning there; here they are an error.
  if grep -v '^INFO' "$work/kv.txt" | grep -q .; then
    cat "$work/kv.txt"; die "kubernetes-validate warnings (Kubernetes $v)"
  fi
  echo "    ok"
done

# --- 4. wiring ----------------------------------------------------------------------
for f in "$work"/rendered/*.yaml; do
  log "wiring of $(basename "$f" .yaml)"
  check wiring "$f" || die "wiring of $(basename "$f" .yaml)"
  echo "    ok"
done

# --- 5. checkov ---------------------------------------------------------------------
log "checkov (kubernetes, dockerfile)"
# One run over a staging copy: the manifests as written, the renders and the
# Dockerfile. --skip-download: no Prisma Cloud calls (this runs offline).
mkdir -p "$work/checkov"
cp -r "$here/kubernetes" "$work/checkov/kubernetes"
cp -r "$work/rendered" "$work/checkov/rendered"
cp "$here/Dockerfile" "$work/checkov/Dockerfile"
# checkov's own exit status counts too; the report lists skips and failures.
status=0
(cd "$work/checkov" && "$venv/bin/checkov" -d . --framework kubernetes dockerfile \
  --skip-download -o json > "$work/checkov.json" 2> "$work/checkov.err") || status=$?
if [ ! -s "$work/checkov.json" ]; then
  cat "$work/checkov.err"; die "checkov produced no report (exit $status)"
fi
check checkov "$work/checkov.json" || die "checkov"
[ "$status" = 0 ] || { cat "$work/checkov.err"; die "checkov exited $status"; }

# --- 6. Dockerfile ------------------------------------------------------------------
log "hadolint $("$venv/bin/hadolint" --version | grep -oE '[0-9.]+$')"
"$venv/bin/hadolint" --no-color --failure-threshold style "$here/Dockerfile" || die "hadolint"
check dockerfile "$here/Dockerfile" || die "Dockerfile contract"
echo "    ok"

# --- 7. compose ---------------------------------------------------------------------
log "compose.yaml structure"
check compose "$here/compose.yaml" || die "compose.yaml"
echo "    ok"

log "deploy/ valid ($((SECONDS - started)) s)"
