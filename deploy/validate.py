"""Checks behind deploy/validate.sh that no off-the-shelf tool does here.

Run by validate.sh with the tools' venv (it needs PyYAML, which checkov
brings). Subcommands:

  yaml FILE...             parse every document; duplicate keys are errors
                           (plain YAML loaders silently keep the last one)
  render KUSTOMIZATION_DIR print `kustomize build` of a directory, for
                           machines with neither kustomize nor kubectl: it
                           implements only what deploy/kubernetes uses
                           (resources, namespace, images, replicas,
                           strategic-merge patches) and refuses anything else
  same A.yaml B.yaml       the two renders hold the same objects (used to
                           hold `render` to kustomize's output)
  wiring RENDERED.yaml     the objects fit together: selectors, port names,
                           ConfigMap/ServiceAccount references, probes,
                           listen addresses, key file path
  compose FILE             structural checks of compose.yaml (no docker
                           engine here to run `docker compose config`)
  dockerfile FILE          the image's contract: ports, user, entrypoint, logs
  checkov REPORT.json      summary of checkov's JSON report; failed checks and
                           parsing errors are errors, skips are listed

Each prints what it found wrong and exits 1, or exits 0.
"""

from __future__ import annotations

import copy
import difflib
import re
import sys
from pathlib import Path

import yaml


class Fail(Exception):
    """A finding: the message says what and where."""


# --- YAML ----------------------------------------------------------------------


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys."""


def _mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise Fail(f"{mark.name}:{mark.line + 1}: duplicate key {key!r}")
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_all(path: Path) -> list:
    with open(path, encoding="utf-8") as f:
        try:
            return [d for d in yaml.load_all(f, Loader=StrictLoader) if d is not None]
        except yaml.YAMLError as e:
            raise Fail(f"{path}: {e}") from e


def load_one(path: Path):
    docs = load_all(path)
    if len(docs) != 1:
        raise Fail(f"{path}: expected one YAML document, found {len(docs)}")
    return docs[0]


def cmd_yaml(paths: list[str]) -> list[str]:
    errors = []
    for p in paths:
        try:
            load_all(Path(p))
        except Fail as e:
            errors.append(str(e))
    return errors


# --- kustomize fallback ------------------------------------------------------------

SUPPORTED = {"apiVersion", "kind", "namespace", "resources", "images", "replicas", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PersistentVolume", "StorageClass", "PriorityClass"}
WORKLOADS = {"Deployment", "StatefulSet", "ReplicaSet", "DaemonSet", "Job"}


def _is_named_list(items) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def strategic_merge(base, patch):
    """The part of strategic merge patch deploy/kubernetes uses: maps merge,
    lists of named objects (containers, env, volumes...) merge by name,
    other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if isinstance(k, str) and k.startswith("$"):
                raise Fail(f"render: patch directive {k} is not supported by the fallback renderer")
            out[k] = strategic_merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and _is_named_list(base) and _is_named_list(patch):
        out = [copy.deepcopy(i) for i in base]
        index = {i["name"]: n for n, i in enumerate(out)}
        for item in patch:
            if item["name"] in index:
                out[index[item["name"]]] = strategic_merge(out[index[item["name"]]], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def _pod_specs(obj: dict):
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        yield spec
    elif obj.get("kind") in WORKLOADS:
        yield (spec.get("template") or {}).get("spec") or {}
    elif obj.get("kind") == "CronJob":
        yield ((((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")) or {}


def _split_image(image: str) -> tuple[str, str, str]:
    name, digest = (image.split("@", 1) + [""])[:2]
    tag = ""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest


def render(directory: Path) -> list[dict]:
    kfile = next((directory / n for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")
                  if (directory / n).is_file()), None)
    if kfile is None:
        raise Fail(f"render: no kustomization.yaml in {directory}")
    k = load_one(kfile) or {}
    unsupported = set(k) - SUPPORTED
    if unsupported:
        raise Fail(f"render: {kfile} uses {sorted(unsupported)}, which the fallback renderer does "
                   "not implement: install kustomize or kubectl, or extend deploy/validate.py")
    objs: list[dict] = []
    for res in k.get("resources") or []:
        p = (directory / res).resolve()
        objs.extend(render(p) if p.is_dir() else load_all(p))

    for entry in k.get("patches") or []:
        unknown = set(entry) - {"patch", "path", "target"}
        if unknown:
            raise Fail(f"render: {kfile}: patch options {sorted(unknown)} are not supported")
        patch = yaml.load(entry["patch"], Loader=StrictLoader) if "patch" in entry \
            else load_one(directory / entry["path"])
        if not isinstance(patch, dict):
            raise Fail(f"render: {kfile}: only strategic-merge patches are supported (got a JSON 6902 list)")
        target = entry.get("target") or {}
        unknown = set(target) - {"kind", "name"}
        if unknown:
            raise Fail(f"render: {kfile}: patch target fields {sorted(unknown)} are not supported")
        kind = target.get("kind", patch.get("kind"))
        name = target.get("name", (patch.get("metadata") or {}).get("name"))
        hits = [i for i, o in enumerate(objs) if o.get("kind") == kind and o["metadata"].get("name") == name]
        if not hits:
            raise Fail(f"render: {kfile}: patch matches no resource {kind}/{name}")
        for i in hits:
            body = {key: val for key, val in patch.items() if key not in ("apiVersion", "kind")}
            body["metadata"] = {key: val for key, val in (patch.get("metadata") or {}).items()
                                if key not in ("name", "namespace")}
            objs[i] = strategic_merge(objs[i], body)

    if "namespace" in k:
        for o in objs:
            if o.get("kind") not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = k["namespace"]

    for img in k.get("images") or []:
        for o in objs:
            for pod in _pod_specs(o):
                for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
                    name, tag, digest = _split_image(c["image"])
                    if name != img["name"]:
                        continue
                    name = img.get("newName", name)
                    tag = str(img.get("newTag", tag))
                    digest = img.get("digest", digest)
                    c["image"] = name + (f"@{digest}" if digest else f":{tag}" if tag else "")

    for rep in k.get("replicas") or []:
        hits = [o for o in objs if o.get("kind") in WORKLOADS - {"DaemonSet", "Job"}
                and o["metadata"].get("name") == rep["name"]]
        if not hits:
            raise Fail(f"render: {kfile}: replicas names no workload {rep['name']}")
        for o in hits:
            o["spec"]["replicas"] = rep["count"]
    return objs


def cmd_render(directory: str) -> list[str]:
    yaml.safe_dump_all(render(Path(directory)), sys.stdout, sort_keys=True)
    return []


# --- same ----------------------------------------------------------------------------


def _normal(x):
    """Order-insensitive form for lists of named objects (kustomize moves
    patched env entries); everything else compares as is."""
    if isinstance(x, dict):
        return {k: _normal(v) for k, v in x.items()}
    if isinstance(x, list):
        items = [_normal(i) for i in x]
        return sorted(items, key=lambda i: str(i["name"])) if _is_named_list(items) else items
    return x


def _keyed(path: Path) -> dict:
    out = {}
    for o in load_all(path):
        m = o.get("metadata") or {}
        out[f"{o.get('kind')}/{m.get('namespace', '')}/{m.get('name')}"] = _normal(o)
    return out


def cmd_same(a: str, b: str) -> list[str]:
    ka, kb = _keyed(Path(a)), _keyed(Path(b))
    errors = []
    for key in sorted(set(ka) | set(kb)):
        if ka.get(key) != kb.get(key):
            da = yaml.safe_dump(ka.get(key), sort_keys=True).splitlines()
            db = yaml.safe_dump(kb.get(key), sort_keys=True).splitlines()
            diff = "\n".join(difflib.unified_diff(da, db, a, b, lineterm="", n=2))
            errors.append(f"{key} differs:\n{diff}")
    return errors


# --- wiring ----------------------------------------------------------------------------


def _port_of(addr: str) -> int:
    m = re.fullmatch(r"(?:\[[0-9a-fA-F:.]+\]|[^:]+):(\d+)", addr or "")
    if not m:
        raise Fail(f"not a host:port address: {addr!r}")
    return int(m.group(1))


def _selects(selector: dict, labels: dict) -> bool:
    want = (selector or {}).get("matchLabels") or {}
    return bool(want) and all(labels.get(k) == v for k, v in want.items()) \
        and not (selector or {}).get("matchExpressions")


def cmd_wiring(path: str) -> list[str]:
    objs = load_all(Path(path))
    errors: list[str] = []
    err = errors.append
    by_kind: dict[str, dict[str, dict]] = {}
    for o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    deps = by_kind.get("Deployment", {})
    if set(deps) != {"berth"}:
        return [f"{path}: expected exactly one Deployment named berth, found {sorted(deps)}"]
    dep = deps["berth"]
    ns = dep["metadata"].get("namespace")
    tmpl = dep["spec"]["template"]
    labels = tmpl["metadata"].get("labels") or {}
    pod = tmpl["spec"]
    if not _selects(dep["spec"]["selector"], labels):
        err("Deployment selector does not match its pod template labels")
    for o in objs:
        if o["kind"] not in CLUSTER_SCOPED and o["metadata"].get("namespace") != ns:
            err(f"{o['kind']}/{o['metadata']['name']} is in namespace "
                f"{o['metadata'].get('namespace')!r}, the Deployment in {ns!r}")
    if ns not in by_kind.get("Namespace", {}):
        err(f"namespace {ns} is not created by the render")

    containers = pod.get("containers") or []
    c = next((c for c in containers if c["name"] == "berth"), None)
    if c is None:
        return errors + ["Deployment has no container named berth"]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports") or []}
    if set(ports) != {"grpc", "metrics"}:
        err(f"container ports should be named grpc and metrics, found {sorted(ports)}")
    if ":latest" in c["image"] or ":" not in c["image"].rsplit("/", 1)[-1] and "@" not in c["image"]:
        err(f"image {c['image']} has no fixed tag or digest")

    sa = pod.get("serviceAccountName")
    if sa not in by_kind.get("ServiceAccount", {}):
        err(f"serviceAccountName {sa!r} is not in the render")
    if pod.get("automountServiceAccountToken") is not False:
        err("pod must set automountServiceAccountToken: false")

    env = {}
    for ref in c.get("envFrom") or []:
        name = (ref.get("configMapRef") or {}).get("name")
        if name is None:
            continue
        cm = by_kind.get("ConfigMap", {}).get(name)
        if cm is None:
            err(f"envFrom configMapRef {name!r} is not in the render")
        else:
            env.update(cm.get("data") or {})
    explicit = {e["name"]: e for e in c.get("env") or []}
    for name in ("BERTH_LISTEN", "BERTH_METRICS_LISTEN"):
        value = (explicit.get(name) or {}).get("value", env.get(name))
        want = ports.get("grpc" if name == "BERTH_LISTEN" else "metrics")
        try:
            if _port_of(value) != want:
                err(f"{name}={value} does not listen on the container port {want}")
        except Fail as e:
            err(f"{name}: {e}")
    if env.get("BERTH_LOG_FORMAT") != "json":
        err("BERTH_LOG_FORMAT should be json in the ConfigMap")
    for name in ("BERTH_SECRET_KEY", "BERTH_DATABASE_URL"):
        if name in env:
            err(f"{name} must not be in a ConfigMap")
    if "BERTH_SECRET_KEY" in explicit:
        err("BERTH_SECRET_KEY must not be an env var: use BERTH_SECRET_KEY_FILE")
    db = ((explicit.get("BERTH_DATABASE_URL") or {}).get("valueFrom") or {}).get("secretKeyRef")
    if not db:
        err("BERTH_DATABASE_URL must come from a secretKeyRef")
    key_file = (explicit.get("BERTH_SECRET_KEY_FILE") or {}).get("value", "")
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts") or []}
    key_dir, _, key_name = key_file.rpartition("/")
    mount = mounts.get(key_dir)
    vol = volumes.get(mount["name"]) if mount else None
    items = {i["path"]: i["key"] for i in ((vol or {}).get("secret") or {}).get("items") or []}
    if not (vol and "secret" in vol and key_name in items and mount.get("readOnly")):
        err(f"BERTH_SECRET_KEY_FILE={key_file!r} is not a file of a read-only mounted Secret volume")
    if "/tmp" not in mounts or "emptyDir" not in volumes.get(mounts["/tmp"]["name"], {}):
        err("/tmp must be an emptyDir (the root filesystem is read-only)")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        grpc = (c.get(probe) or {}).get("grpc")
        if not grpc or grpc.get("port") != ports.get("grpc"):
            err(f"{probe} must be a gRPC probe on the grpc port {ports.get('grpc')}")
    for tsc in pod.get("topologySpreadConstraints") or []:
        if not _selects(tsc.get("labelSelector"), labels):
            err(f"topologySpreadConstraint on {tsc.get('topologyKey')} selects no berth pod")
    if not pod.get("topologySpreadConstraints") and not (pod.get("affinity") or {}).get("podAntiAffinity"):
        err("pods are not spread across nodes")

    for name, svc in by_kind.get("Service", {}).items():
        if not all(labels.get(k) == v for k, v in (svc["spec"].get("selector") or {}).items()) \
                or not svc["spec"].get("selector"):
            err(f"Service {name} selector does not match the berth pods")
        for p in svc["spec"].get("ports") or []:
            tp = p.get("targetPort", p["port"])
            if (tp not in ports) if isinstance(tp, str) else (tp not in ports.values()):
                err(f"Service {name} port {p.get('name')} targets {tp!r}, not a container port")
    for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        if not _selects(pdb["spec"].get("selector"), labels):
            err(f"PodDisruptionBudget {name} does not select the berth pods")
        if pdb["spec"].get("minAvailable", 0) >= dep["spec"].get("replicas", 1):
            err(f"PodDisruptionBudget {name} minAvailable leaves no room for a voluntary disruption")
    for name, np in by_kind.get("NetworkPolicy", {}).items():
        if not _selects(np["spec"].get("podSelector"), labels):
            err(f"NetworkPolicy {name} does not select the berth pods")
        for rule in np["spec"].get("ingress") or []:
            for p in rule.get("ports") or []:
                if p.get("port") not in ports.values() and p.get("port") not in ports:
                    err(f"NetworkPolicy {name} admits port {p.get('port')}, which berth does not serve")
    if not by_kind.get("NetworkPolicy"):
        err("no NetworkPolicy")
    return errors


# --- compose ---------------------------------------------------------------------------

# Service attributes of the Compose Specification, to catch typos.
COMPOSE_SERVICE_KEYS = set("""
annotations attach blkio_config build cap_add cap_drop cgroup cgroup_parent command configs
container_name cpu_count cpu_percent cpu_period cpu_quota cpu_rt_period cpu_rt_runtime
cpu_shares cpus cpuset credential_spec depends_on deploy develop device_cgroup_rules devices
dns dns_opt dns_search domainname entrypoint env_file environment expose extends
external_links extra_hosts gpus group_add healthcheck hostname image init ipc isolation labels
label_file links logging mac_address mem_limit mem_reservation mem_swappiness memswap_limit
models network_mode networks oom_kill_disable oom_score_adj pid pids_limit platform ports
post_start pre_stop privileged profiles provider pull_policy read_only restart runtime scale
secrets security_opt shm_size stdin_open stop_grace_period stop_signal storage_opt sysctls
tmpfs tty ulimits use_api_socket user userns_mode uts volumes volumes_from working_dir
""".split())
COMPOSE_TOP_KEYS = {"version", "name", "include", "services", "networks", "volumes", "secrets",
                    "configs", "models"}
HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period", "start_interval",
                    "disable"}
DURATION = re.compile(r"^(\d+(\.\d+)?(us|ms|s|m|h))+$")


def cmd_compose(path: str) -> list[str]:
    p = Path(path)
    doc = load_one(p)
    errors: list[str] = []
    err = errors.append
    if not isinstance(doc, dict):
        return [f"{path}: not a mapping"]
    for k in doc:
        if k not in COMPOSE_TOP_KEYS and not str(k).startswith("x-"):
            err(f"top-level key {k!r} is not in the Compose Specification")
    services = doc.get("services") or {}
    declared_volumes = set((doc.get("volumes") or {}).keys())
    for name, svc in services.items():
        for k in svc:
            if k not in COMPOSE_SERVICE_KEYS and not str(k).startswith("x-"):
                err(f"services.{name}: unknown attribute {k!r}")
        if "image" not in svc and "build" not in svc:
            err(f"services.{name}: needs image or build")
        for v in svc.get("volumes") or []:
            src = v.split(":", 1)[0] if isinstance(v, str) else v.get("source", "")
            if src and not src.startswith((".", "/", "~")) and src not in declared_volumes:
                err(f"services.{name}: volume {src!r} is not declared under top-level volumes")
        for dep, cond in (svc.get("depends_on") or {}).items() if isinstance(svc.get("depends_on"), dict) else []:
            if dep not in services:
                err(f"services.{name}.depends_on: no service {dep!r}")
            if cond.get("condition") not in ("service_started", "service_healthy",
                                              "service_completed_successfully"):
                err(f"services.{name}.depends_on.{dep}: bad condition {cond.get('condition')!r}")
        hc = svc.get("healthcheck")
        if hc is not None:
            for k in hc:
                if k not in HEALTHCHECK_KEYS:
                    err(f"services.{name}.healthcheck: unknown attribute {k!r}")
            for k in ("interval", "timeout", "start_period", "start_interval"):
                if k in hc and not DURATION.match(str(hc[k])):
                    err(f"services.{name}.healthcheck.{k}: {hc[k]!r} is not a duration")
            test = hc.get("test")
            if not (isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL", "NONE")):
                err(f"services.{name}.healthcheck.test must be a list starting with CMD or CMD-SHELL")
        for f in svc.get("env_file") or []:
            fp = f if isinstance(f, str) else f.get("path")
            if not fp or not (p.parent / f"{fp}.example").is_file():
                err(f"services.{name}.env_file {fp!r} has no {fp}.example beside compose.yaml")
        env = svc.get("environment") or {}
        names = env.keys() if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]
        for secret in ("BERTH_SECRET_KEY", "POSTGRES_PASSWORD", "BERTH_DATABASE_URL"):
            if secret in names:
                err(f"services.{name}.environment sets {secret}: keep it in the env file")
        for port in svc.get("ports") or []:
            if not isinstance(port, str) or not re.fullmatch(r"(\d+\.\d+\.\d+\.\d+:)?\d+:\d+(/(tcp|udp))?", port):
                err(f"services.{name}.ports: {port!r} is not HOST_IP:HOST:CONTAINER")

    pg, berth = services.get("postgres"), services.get("berth")
    if not pg or not berth:
        return errors + ["services postgres and berth are required"]
    if not re.fullmatch(r"postgres:16([.-].*)?", pg.get("image", "")):
        err(f"postgres image {pg.get('image')!r} is not PostgreSQL 16")
    if not pg.get("healthcheck"):
        err("postgres needs a healthcheck")
    if not any((v.split(":", 1)[0] if isinstance(v, str) else v.get("source")) in declared_volumes
               for v in pg.get("volumes") or []):
        err("postgres data must be on a named volume")
    cond = ((berth.get("depends_on") or {}).get("postgres") or {}).get("condition")
    if cond != "service_healthy":
        err("berth must wait for postgres with condition: service_healthy")
    build = berth.get("build") or {}
    dockerfile = (p.parent / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).resolve()
    if dockerfile != (p.parent / "Dockerfile").resolve():
        err(f"berth must build deploy/Dockerfile, builds {dockerfile}")
    if not berth.get("env_file"):
        err("berth must read its key from an env file")
    if not any(str(port).endswith(":50051") for port in berth.get("ports") or []):
        err("berth must publish 50051")
    if berth.get("read_only") is not True:
        err("berth should run with read_only: true")
    examples = {}
    for f in berth.get("env_file") or []:
        fp = f if isinstance(f, str) else f.get("path")
        ex = p.parent / f"{fp}.example"
        if ex.is_file():
            examples.update(line.split("=", 1) for line in ex.read_text().splitlines()
                            if "=" in line and not line.startswith("#"))
    for want in ("BERTH_SECRET_KEY", "BERTH_DATABASE_URL"):
        if want not in examples:
            err(f"berth's env file example lacks {want}")
    return errors


# --- Dockerfile ----------------------------------------------------------------------


def cmd_dockerfile(path: str) -> list[str]:
    text = Path(path).read_text()
    lines = re.sub(r"\\\n", " ", text).splitlines()
    instr = [(l.split(None, 1) + [""])[:2] for l in lines if l.strip() and not l.lstrip().startswith("#")]
    instr = [(i.upper(), a.strip()) for i, a in instr]
    errors: list[str] = []
    err = errors.append
    froms = [a for i, a in instr if i == "FROM"]
    if not froms or not froms[0].startswith("rust:1.95-bookworm"):
        err("the build stage must be FROM rust:1.95-bookworm")
    runtime = len(instr) - 1 - [i for i, _ in instr][::-1].index("FROM")
    final = instr[runtime:]
    if not any(i == "RUN" and "cargo build --release --locked --bin berth" in a for i, a in instr):
        err("the build must run cargo build --release --locked --bin berth")
    users = [a for i, a in final if i == "USER"]
    if not users or users[-1].split(":")[0] in ("0", "root", ""):
        err("the runtime stage must end with a non-root USER")
    exposed = {p.split("/")[0] for i, a in final if i == "EXPOSE" for p in a.split()}
    if not {"50051", "9090"} <= exposed:
        err(f"EXPOSE must list 50051 and 9090, lists {sorted(exposed)}")
    env = " ".join(a for i, a in final if i == "ENV")
    for want in ("BERTH_LOG_FORMAT=json", "BERTH_LISTEN=0.0.0.0:50051", "BERTH_METRICS_LISTEN=0.0.0.0:9090"):
        if want not in env:
            err(f"runtime ENV lacks {want}")
    entry = [a for i, a in final if i == "ENTRYPOINT"]
    cmd = [a for i, a in final if i == "CMD"]
    if not entry or "berth" not in entry[-1] or "serve" not in (entry[-1] + " ".join(cmd[-1:])):
        err("ENTRYPOINT/CMD must run berth serve")
    return errors


# --- checkov report ----------------------------------------------------------------------


def cmd_checkov(path: str) -> list[str]:
    """Summarises checkov's JSON report: counts, every skip with its reason,
    and every failure or file checkov could not parse as an error."""
    import json

    data = json.loads(Path(path).read_text())
    reports = data if isinstance(data, list) else [data]
    errors: list[str] = []
    skips: dict[tuple[str, str], set[str]] = {}
    seen = set()
    for r in reports:
        s = r.get("summary") or {}
        seen.add(r.get("check_type"))
        print(f"    {r.get('check_type')} (checkov {s.get('checkov_version')}): {s.get('passed')} passed, {s.get('failed')} failed, "
              f"{s.get('skipped')} skipped, {s.get('parsing_errors')} parsing errors")
        res = r.get("results") or {}
        for c in res.get("failed_checks") or []:
            errors.append(f"{c['check_id']} {c.get('check_name', '')}: {c['resource']} in "
                          f"{c['file_path']}:{c['file_line_range']}")
        for c in res.get("skipped_checks") or []:
            reason = " ".join(str((c.get("check_result") or {}).get("suppress_comment") or "").split())
            if not reason:
                errors.append(f"{c['check_id']} is skipped without a reason in {c['file_path']}")
            skips.setdefault((c["check_id"], reason), set()).add(c["file_path"])
        for p in res.get("parsing_errors") or []:
            errors.append(f"checkov could not parse {p}")
    for want in ("kubernetes", "dockerfile"):
        if want not in seen:
            errors.append(f"checkov ran no {want} checks")
    if skips:
        print("    skipped on purpose:")
        for (cid, reason), files in sorted(skips.items()):
            print(f"      {cid} ({len(files)} files): {reason}")
    return errors


# --- main ------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    commands = {
        "yaml": lambda a: cmd_yaml(a),
        "render": lambda a: cmd_render(*a),
        "same": lambda a: cmd_same(*a),
        "wiring": lambda a: cmd_wiring(*a),
        "compose": lambda a: cmd_compose(*a),
        "dockerfile": lambda a: cmd_dockerfile(*a),
        "checkov": lambda a: cmd_checkov(*a),
    }
    if len(argv) < 2 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        errors = commands[argv[1]](argv[2:])
    except Fail as e:
        errors = [str(e)]
    for e in errors:
        print(f"  ✗ {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
