"""Checks the rendered Kubernetes manifests of deploy/k8s (run by scripts/k8s-check.sh).

    k8s_check.py --kubernetes-version 1.32.0 [--self-test] [--binaries target/debug] \
        emulator=RENDERED.yaml entra=RENDERED.yaml

Each overlay's rendering (`kubectl kustomize deploy/k8s/<overlay>`) is checked:

1. every object against the Kubernetes OpenAPI schema of the given version, strictly (an unknown
   field fails, and so does a kind the schema does not know), with the kubernetes-validate package;
2. the wiring this project relies on: the API's replicas, probes, PodDisruptionBudget, security
   context, resources and termination grace (against server.shutdown_timeout_secs in the settings
   file the Deployment mounts); the API's database: a postgres:// database.url in both overlays
   and no emptyDir holding an SQLite task store, and in the `emulator` overlay a single-replica
   PostgreSQL StatefulSet (volumeClaimTemplate, PGDATA below the claimed mount, pg_isready probes,
   a headless governing Service) that the URL reaches through a ClusterIP Service with the user and
   database the server creates, the password only as a $(VAR) reference to an earlier variable
   from the same Secret key as the server's POSTGRES_PASSWORD; the CronJob's concurrency policy,
   backoff limit and deadline; and in the `entra` overlay, Azure Workload Identity on every pod
   template that acquires tokens and no Secret anywhere;
3. with --binaries, each service's shipped settings through the service's own parser, which
   refuses a key the code does not have (the variables as the kubelet would give them: values
   from ConfigMaps and Secrets, $(VAR) references expanded).

Every failed assertion is one line naming the overlay, the object and the field. --self-test then
breaks the renderings in memory, one way at a time, and expects each break to be caught.
"""

from __future__ import annotations

import argparse
import base64
import copy
import os
import re
import subprocess
import sys
import tempfile
import urllib.parse

try:
    import tomllib
except ImportError:  # Python < 3.11
    sys.exit("k8s-check: Python 3.11 or later is needed (tomllib)")

import kubernetes_validate
import yaml
from kubernetes_validate.utils import (InvalidSchemaError, SchemaNotFoundError, ValidationError,
                                      VersionNotSupportedError)

WI_USE = "azure.workload.identity/use"
WI_CLIENT_ID = "azure.workload.identity/client-id"
# Images whose containers acquire no token: their pods need no workload identity and get none.
# api-service only fetches the tenant's public signing keys. Any other image (caller-service, or
# one added later) must be wired for workload identity in the entra overlay.
NO_TOKEN_IMAGES = {"api-service"}
API_IMAGE = "api-service"
POSTGRES_IMAGE = "postgres"
# Where the api-service image keeps its SQLite file (the Dockerfile's API__DATABASE__PATH): an
# emptyDir there would be a per-pod task store again.
API_IMAGE_SQLITE_PATH = "/var/lib/api-service/tasks.db"
# A character a URL's user-info may hold as it is; anything else would need percent-encoding.
URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+")
# Kubernetes' dependent-variable reference, $(NAME), and its escape, $$.
VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def image_name(image: str) -> str:
    """`registry/path/api-service:0.1.0` → `api-service`."""
    return image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]


def ref(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


class Checks:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed = 0

    def check(self, condition: bool, overlay: str, obj: str, field: str, message: str) -> bool:
        if condition:
            self.passed += 1
        else:
            self.failures.append(f"FAIL {overlay}: {obj}: {field}: {message}")
        return bool(condition)


def pod_templates(obj: dict):
    """(path, pod template) of a workload object: Deployments, StatefulSets, DaemonSets, Jobs,
    CronJobs (jobTemplate.spec.template), and bare Pods."""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        yield "spec.template", spec.get("template") or {}
    elif kind == "CronJob":
        yield "spec.jobTemplate.spec.template", ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    elif kind == "Pod":
        yield "", {"metadata": obj.get("metadata") or {}, "spec": spec}


def containers(template: dict):
    spec = template.get("spec") or {}
    for kind in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(kind) or []):
            yield f"{kind}[{container.get('name', index)}]", container


def index(objects: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o.get("kind"), o.get("metadata", {}).get("name")): o for o in objects}


# ---- 1. schema ----------------------------------------------------------------------------------


def check_schema(c: Checks, overlay: str, objects: list[dict], version: str) -> None:
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
            c.check(True, overlay, ref(obj), "schema", "")
        except ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "(object)"
            c.check(False, overlay, ref(obj), path, f"not valid in Kubernetes {version}: {e.message}")
        except (SchemaNotFoundError, InvalidSchemaError):
            c.check(False, overlay, ref(obj), "apiVersion/kind",
                    f"{obj.get('apiVersion')} {obj.get('kind')} is not in Kubernetes {version}'s schema")
        except VersionNotSupportedError:
            sys.exit(f"k8s-check: kubernetes-validate {kubernetes_validate.__version__} has no schema for Kubernetes {version}")


# ---- 2. wiring ----------------------------------------------------------------------------------


def check_pod_security(c: Checks, overlay: str, obj: dict, path: str, template: dict) -> None:
    """Non-root, read-only root filesystem, requests and limits: for every pod template."""
    spec = template.get("spec") or {}
    pod_nonroot = (spec.get("securityContext") or {}).get("runAsNonRoot")
    for where, container in containers(template):
        sc = container.get("securityContext") or {}
        field = f"{path}.spec.{where}"
        nonroot = sc.get("runAsNonRoot", pod_nonroot)
        c.check(nonroot is True, overlay, ref(obj), f"{field}.securityContext.runAsNonRoot",
                "must be true (in the container's or the pod's securityContext)")
        c.check(sc.get("readOnlyRootFilesystem") is True, overlay, ref(obj),
                f"{field}.securityContext.readOnlyRootFilesystem", "must be true")
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                c.check(bool((resources.get(kind) or {}).get(resource)), overlay, ref(obj),
                        f"{field}.resources.{kind}.{resource}", "must be set")


def config_file(objects: dict, template: dict, container: dict):
    """The TOML file the container is given with --config, read from the ConfigMap volume that
    holds it: (text, where) or (None, why not)."""
    args = list(container.get("command") or []) + list(container.get("args") or [])
    path = None
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            path = args[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
    if path is None:
        return None, "the container is given no --config file"
    mounts = [m for m in container.get("volumeMounts") or [] if path.startswith(m["mountPath"].rstrip("/") + "/")]
    if not mounts:
        return None, f"no volume is mounted where --config {path} is"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    relative = path[len(mount["mountPath"].rstrip("/")) + 1:]
    volume = next((v for v in (template.get("spec") or {}).get("volumes") or [] if v.get("name") == mount["name"]), None)
    if not volume or "configMap" not in volume:
        return None, f"--config {path} is not on a ConfigMap volume"
    name = volume["configMap"]["name"]
    data_key = relative
    for item in volume["configMap"].get("items") or []:
        if item["path"] == relative:
            data_key = item["key"]
    config_map = objects.get(("ConfigMap", name))
    if config_map is None or data_key not in (config_map.get("data") or {}):
        return None, f"ConfigMap/{name} has no key {data_key} (--config {path})"
    return config_map["data"][data_key], f"ConfigMap/{name} key {data_key}"


def config_file_value(objects: dict, template: dict, container: dict, section: str | None, key: str):
    """[section] key (or a top-level key) of the container's --config file: (value, where) or
    (None, why not)."""
    text, where = config_file(objects, template, container)
    if text is None:
        return None, where
    try:
        settings = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return None, f"{where} is not TOML: {e}"
    value = (settings.get(section) or {}).get(key) if section else settings.get(key)
    if value is None:
        return None, f"{where} sets no {section + '.' if section else ''}{key}"
    return value, where


def env_value(objects: dict, container: dict, name: str):
    """A variable as the container gets it: env first, then envFrom ConfigMaps (a value from a
    Secret, or one computed at run time, is not known here and yields None)."""
    for var in container.get("env") or []:
        if var.get("name") == name:
            return var.get("value")
    for source in container.get("envFrom") or []:
        config_map = objects.get(("ConfigMap", (source.get("configMapRef") or {}).get("name")))
        if config_map and name in (config_map.get("data") or {}):
            return config_map["data"][name]
    return None


def prestop_sleep(container: dict) -> int:
    handler = ((container.get("lifecycle") or {}).get("preStop")) or {}
    if "sleep" in handler:
        return int(handler["sleep"].get("seconds", 0))
    command = (handler.get("exec") or {}).get("command") or []
    if len(command) == 2 and command[0] in ("sleep", "/bin/sleep") and command[1].isdigit():
        return int(command[1])
    return 0


def probe_path(container: dict, probe: str):
    return ((container.get(probe) or {}).get("httpGet") or {}).get("path")


def selects(selector: dict, labels: dict) -> bool:
    match = (selector or {}).get("matchLabels") or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def check_api(c: Checks, overlay: str, objects: dict) -> None:
    apis = [
        (o, t) for o in objects.values() if o.get("kind") == "Deployment"
        for _, t in pod_templates(o)
        if any(image_name(ct.get("image", "")) == API_IMAGE for _, ct in containers(t))
    ]
    if not c.check(len(apis) == 1, overlay, "Deployment/*", "image", f"exactly one Deployment must run {API_IMAGE} (found {len(apis)})"):
        return
    api, template = apis[0]
    spec = api.get("spec") or {}
    c.check(isinstance(spec.get("replicas"), int) and spec["replicas"] >= 2, overlay, ref(api),
            "spec.replicas", f"must be at least 2 (is {spec.get('replicas')})")
    container = next(ct for _, ct in containers(template) if image_name(ct.get("image", "")) == API_IMAGE)
    name = f"spec.template.spec.containers[{container.get('name')}]"
    c.check(probe_path(container, "readinessProbe") == "/readyz?exclude=database", overlay, ref(api),
            f"{name}.readinessProbe.httpGet.path",
            f"must be /readyz?exclude=database, the shared database not counted (is {probe_path(container, 'readinessProbe')})")
    c.check(probe_path(container, "livenessProbe") == "/healthz", overlay, ref(api),
            f"{name}.livenessProbe.httpGet.path", f"must be /healthz (is {probe_path(container, 'livenessProbe')})")

    # Termination grace against the shutdown timeout the API is actually given.
    variable = env_value(objects, container, "API__SERVER__SHUTDOWN_TIMEOUT_SECS")
    if variable is not None:
        timeout, source = variable, "API__SERVER__SHUTDOWN_TIMEOUT_SECS"
    else:
        timeout, source = config_file_value(objects, template, container, "server", "shutdown_timeout_secs")
    if c.check(timeout is not None and str(timeout).isdigit(), overlay, ref(api), "server.shutdown_timeout_secs",
               f"must be set in the settings the API is given ({source})"):
        grace = (template.get("spec") or {}).get("terminationGracePeriodSeconds")
        sleep = prestop_sleep(container)
        c.check(isinstance(grace, int) and grace > int(timeout) + sleep, overlay, ref(api),
                "spec.template.spec.terminationGracePeriodSeconds",
                f"is {grace}: must exceed server.shutdown_timeout_secs {timeout} ({source}) + preStop sleep {sleep}")

    labels = (template.get("metadata") or {}).get("labels") or {}
    pdbs = [o for o in objects.values() if o.get("kind") == "PodDisruptionBudget"
            and selects((o.get("spec") or {}).get("selector"), labels)]
    if c.check(len(pdbs) >= 1, overlay, ref(api), "PodDisruptionBudget", "no PodDisruptionBudget selects the API's pods"):
        pdb_spec = pdbs[0].get("spec") or {}
        minimum = pdb_spec.get("minAvailable")
        most = pdb_spec.get("maxUnavailable")
        useful = (isinstance(minimum, int) and 1 <= minimum < spec.get("replicas", 0)) or \
                 (isinstance(most, int) and 1 <= most < spec.get("replicas", 0))
        c.check(useful, overlay, ref(pdbs[0]), "spec.minAvailable/maxUnavailable",
                "must keep at least one API pod and let at least one go (an integer below spec.replicas)")


# ---- 2b. the API's database ----------------------------------------------------------------------


def expand(value: str, defined: dict[str, str]) -> str:
    """$(NAME) as Kubernetes expands it in a container's env: replaced when NAME is defined
    before (in envFrom, or earlier in env), left as written otherwise; $$ is a literal $."""
    return VAR_REF.sub(lambda m: "$" if m.group(0) == "$$" else defined.get(m.group(1), m.group(0)), value)


def api_deployment(objects: dict):
    """(Deployment, pod template, container) of the API, or None."""
    for obj in objects.values():
        if obj.get("kind") != "Deployment":
            continue
        for _, template in pod_templates(obj):
            for _, container in containers(template):
                if image_name(container.get("image", "")) == API_IMAGE:
                    return obj, template, container
    return None


def database_setting(objects: dict, template: dict, container: dict, key: str):
    """database.<key> as the API gets it: (value, where it comes from), the variable winning over
    the --config file; (None, why) when unset. A value from a Secret is not read here."""
    variable = f"API__DATABASE__{key.upper()}"
    for var in container.get("env") or []:
        if var.get("name") == variable:
            if "value" in var:
                return var["value"], f"env[{variable}]"
            return None, f"env[{variable}] is not a literal value (valueFrom)"
    for source in container.get("envFrom") or []:
        config_map = objects.get(("ConfigMap", (source.get("configMapRef") or {}).get("name")))
        if config_map and variable in (config_map.get("data") or {}):
            return config_map["data"][variable], f"envFrom[{ref(config_map)}].{variable}"
    value, where = config_file_value(objects, template, container, "database", key)
    return value, (where if value is None else f"{where} [database] {key}")


def mounted_volume(template: dict, container: dict, path: str):
    """The volume (and its mount) the container sees `path` on, or (None, None)."""
    mounts = [m for m in container.get("volumeMounts") or []
              if path == m["mountPath"].rstrip("/") or path.startswith(m["mountPath"].rstrip("/") + "/")]
    if not mounts:
        return None, None
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    volume = next((v for v in (template.get("spec") or {}).get("volumes") or [] if v.get("name") == mount["name"]), None)
    return volume, mount


def check_database(c: Checks, overlay: str, objects: dict) -> None:
    """Both overlays: the API replicas share a PostgreSQL database named by database.url, and no
    emptyDir holds an SQLite task store. The emulator overlay: that database is its own PostgreSQL
    StatefulSet on a volumeClaimTemplate, and the URL's password comes from a Secret through a
    dependent variable, never written in the Deployment."""
    found = api_deployment(objects)
    if found is None:
        return  # check_api says so
    api, template, container = found
    field = f"spec.template.spec.containers[{container.get('name')}]"

    # No SQLite file on an emptyDir: neither where the image keeps it nor where the settings say.
    sqlite_paths = {API_IMAGE_SQLITE_PATH}
    path, _ = database_setting(objects, template, container, "path")
    if path:
        sqlite_paths.add(os.path.join("/", str(path)))
    url, url_source = database_setting(objects, template, container, "url")
    if isinstance(url, str) and "://" not in url:
        sqlite_paths.add(os.path.join("/", url.removeprefix("sqlite:").removeprefix("//")))
    for sqlite_path in sorted(sqlite_paths):
        volume, mount = mounted_volume(template, container, os.path.dirname(sqlite_path))
        c.check(volume is None or "emptyDir" not in volume, overlay, ref(api),
                f"{field}.volumeMounts[{(mount or {}).get('name')}]",
                f"an emptyDir at {(mount or {}).get('mountPath')} holds {sqlite_path}: a per-pod SQLite task store "
                "(the replicas must share the PostgreSQL database)")

    scheme = urllib.parse.urlsplit(url).scheme if isinstance(url, str) else None
    if not c.check(scheme in ("postgres", "postgresql"), overlay, ref(api), "database.url",
                   f"must be a postgres:// URL, which the replicas share (is {url!r}: {url_source})"):
        return
    if overlay != "emulator":
        return

    # ---- the emulator overlay: its own PostgreSQL -----------------------------------------------
    servers = [o for o in objects.values() if o.get("kind") == "StatefulSet"
               and any(image_name(ct.get("image", "")) == POSTGRES_IMAGE for _, t in pod_templates(o) for _, ct in containers(t))]
    if not c.check(len(servers) == 1, overlay, "StatefulSet/*", "image",
                   f"exactly one StatefulSet must run {POSTGRES_IMAGE} (found {len(servers)})"):
        return
    server = servers[0]
    sts = server.get("spec") or {}
    pg_template = sts.get("template") or {}
    pg = next(ct for _, ct in containers(pg_template) if image_name(ct.get("image", "")) == POSTGRES_IMAGE)
    pg_field = f"spec.template.spec.containers[{pg.get('name')}]"
    c.check(sts.get("replicas") == 1, overlay, ref(server), "spec.replicas",
            f"must be 1: the image runs one server, not a replicated cluster (is {sts.get('replicas')})")
    pg_env = {v.get("name"): v for v in pg.get("env") or []}
    # Its data on a claim from the volumeClaimTemplate, PGDATA a subdirectory of the mount.
    claims = {(t.get("metadata") or {}).get("name") for t in sts.get("volumeClaimTemplates") or []}
    if c.check(bool(claims), overlay, ref(server), "spec.volumeClaimTemplates",
               "must claim a PersistentVolume for the data (an emptyDir loses every task with the pod)"):
        pgdata = (pg_env.get("PGDATA") or {}).get("value", "/var/lib/postgresql/data")
        mounts = [m for m in pg.get("volumeMounts") or [] if m.get("name") in claims]
        under = [m for m in mounts if pgdata.startswith(m["mountPath"].rstrip("/") + "/")]
        c.check(bool(under), overlay, ref(server), f"{pg_field}.env[PGDATA]",
                f"is {pgdata}: must be a subdirectory of the claimed volume's mount "
                f"({', '.join(m['mountPath'] for m in mounts) or 'none mounted'}), as the image recommends")
    for probe in ("readinessProbe", "livenessProbe"):
        command = ((pg.get(probe) or {}).get("exec") or {}).get("command") or []
        c.check(bool(command) and os.path.basename(command[0]) == "pg_isready", overlay, ref(server),
                f"{pg_field}.{probe}.exec.command", f"must run pg_isready (is {command or 'none'})")
    governing = objects.get(("Service", sts.get("serviceName")))
    c.check(governing is not None and (governing.get("spec") or {}).get("clusterIP") == "None", overlay, ref(server),
            "spec.serviceName", f"must name a headless Service in the overlay (is {sts.get('serviceName')!r})")

    # The URL: host a Service in front of the server, its user and database the server's.
    parts = urllib.parse.urlsplit(url)
    pg_labels = (pg_template.get("metadata") or {}).get("labels") or {}
    service = objects.get(("Service", parts.hostname))
    c.check(service is not None and (service.get("spec") or {}).get("clusterIP") != "None"
            and selects({"matchLabels": (service.get("spec") or {}).get("selector") or {}}, pg_labels)
            and any(p.get("port") == (parts.port or 5432) for p in (service.get("spec") or {}).get("ports") or []),
            overlay, ref(api), f"{field}.env[API__DATABASE__URL]",
            f"host {parts.hostname}:{parts.port or 5432} must be a ClusterIP Service selecting {ref(server)}'s pods on that port")
    for variable, value in (("POSTGRES_USER", parts.username), ("POSTGRES_DB", parts.path.lstrip("/"))):
        expected = (pg_env.get(variable) or {}).get("value")
        c.check(expected is not None and value == expected, overlay, ref(api), f"{field}.env[API__DATABASE__URL]",
                f"names {value!r} where {ref(server)} creates {variable}={expected!r}")

    # The password: only a $(VAR) reference in the URL, VAR defined before it from the Secret key
    # the server's POSTGRES_PASSWORD comes from.
    password = parts.password or ""
    reference = re.fullmatch(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", password)
    if not c.check(bool(reference), overlay, ref(api), f"{field}.env[API__DATABASE__URL]",
                   "the password must be a $(VAR) reference to a variable from a Secret, not written in the Deployment "
                   f"(is {'***' if password else 'none'})"):
        return
    name = reference.group(1)
    env = container.get("env") or []
    position = {v.get("name"): i for i, v in enumerate(env)}
    var = env[position[name]] if name in position else {}
    secret_ref = (var.get("valueFrom") or {}).get("secretKeyRef") or {}
    if not c.check(bool(secret_ref), overlay, ref(api), f"{field}.env[{name}].valueFrom.secretKeyRef",
                   f"$({name}) in API__DATABASE__URL must come from a Secret (secretKeyRef)"):
        return
    c.check(position[name] < position.get("API__DATABASE__URL", -1), overlay, ref(api), f"{field}.env[{name}]",
            "must come before API__DATABASE__URL in env: Kubernetes expands $(VAR) only from variables defined earlier")
    server_ref = ((pg_env.get("POSTGRES_PASSWORD") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
    c.check((secret_ref.get("name"), secret_ref.get("key")) == (server_ref.get("name"), server_ref.get("key")),
            overlay, ref(api), f"{field}.env[{name}].valueFrom.secretKeyRef",
            f"is {secret_ref.get('name')}/{secret_ref.get('key')}: must be the Secret key {ref(server)}'s POSTGRES_PASSWORD "
            f"comes from ({server_ref.get('name')}/{server_ref.get('key')})")
    secret = objects.get(("Secret", secret_ref.get("name"))) or {}
    value = secret_value(secret, secret_ref.get("key"))
    if c.check(value is not None, overlay, ref(api), f"{field}.env[{name}].valueFrom.secretKeyRef",
               f"Secret/{secret_ref.get('name')} with key {secret_ref.get('key')} is not in the overlay"):
        c.check(bool(URL_SAFE.fullmatch(value)), overlay, f"Secret/{secret_ref.get('name')}", f"data.{secret_ref.get('key')}",
                "goes into a URL as it is: only letters, digits and -._~ (anything else would need percent-encoding)")


def secret_value(secret: dict, key: str | None):
    if key in (secret.get("stringData") or {}):
        return secret["stringData"][key]
    if key in (secret.get("data") or {}):
        return base64.b64decode(secret["data"][key]).decode()
    return None


def check_cronjobs(c: Checks, overlay: str, objects: dict) -> None:
    cronjobs = [o for o in objects.values() if o.get("kind") == "CronJob"]
    c.check(len(cronjobs) >= 1, overlay, "CronJob/*", "kind", "the writer CronJob is missing")
    for cj in cronjobs:
        spec = cj.get("spec") or {}
        job = (spec.get("jobTemplate") or {}).get("spec") or {}
        c.check(spec.get("concurrencyPolicy") == "Forbid", overlay, ref(cj), "spec.concurrencyPolicy",
                f"must be Forbid (is {spec.get('concurrencyPolicy')})")
        c.check(isinstance(job.get("backoffLimit"), int), overlay, ref(cj), "spec.jobTemplate.spec.backoffLimit", "must be set")
        c.check(isinstance(job.get("activeDeadlineSeconds"), int), overlay, ref(cj),
                "spec.jobTemplate.spec.activeDeadlineSeconds", "must be set")
        for _, template in pod_templates(cj):
            for where, container in containers(template):
                args = list(container.get("args") or [])
                field = f"spec.jobTemplate.spec.template.spec.{where}"
                if c.check("once" in args and args.index("once") + 1 < len(args), overlay, ref(cj),
                           f"{field}.args", "must run `caller-service once <job>`"):
                    job = args[args.index("once") + 1]
                    jobs, where_jobs = config_file_value(objects, template, container, None, "jobs")
                    names = [j.get("name") for j in jobs or []]
                    c.check(job in names, overlay, ref(cj), f"{field}.args",
                            f"`once {job}`: no such job in {where_jobs} (jobs: {', '.join(map(str, names)) or 'none'})")


def check_entra(c: Checks, overlay: str, objects: dict) -> None:
    """Azure Workload Identity on every pod template that acquires tokens, and no Secret."""
    for obj in objects.values():
        c.check(obj.get("kind") != "Secret", overlay, ref(obj), "kind", "the entra overlay must hold no Secret")
    for obj in objects.values():
        for path, template in pod_templates(obj):
            spec = template.get("spec") or {}
            for volume in spec.get("volumes") or []:
                secret_sources = [s for s in (volume.get("projected") or {}).get("sources") or [] if "secret" in s]
                c.check("secret" not in volume and not secret_sources, overlay, ref(obj),
                        f"{path}.spec.volumes[{volume.get('name')}]", "a Secret volume: the entra overlay uses none")
            for where, container in containers(template):
                field = f"{path}.spec.{where}"
                for var in container.get("env") or []:
                    c.check("secretKeyRef" not in (var.get("valueFrom") or {}), overlay, ref(obj),
                            f"{field}.env[{var.get('name')}].valueFrom.secretKeyRef", "a Secret reference: the entra overlay uses none")
                    c.check(not var.get("name", "").startswith("AZURE_"), overlay, ref(obj), f"{field}.env[{var.get('name')}]",
                            "AZURE_* variables are the workload-identity webhook's to set (it does not overwrite one set here)")
                for source in container.get("envFrom") or []:
                    c.check("secretRef" not in source, overlay, ref(obj), f"{field}.envFrom.secretRef",
                            "a Secret reference: the entra overlay uses none")
                    config_map = objects.get(("ConfigMap", (source.get("configMapRef") or {}).get("name"))) or {}
                    for name in (config_map.get("data") or {}):
                        c.check(not name.startswith("AZURE_"), overlay, ref(obj), f"{field}.envFrom[{ref(config_map)}].{name}",
                                "AZURE_* variables are the workload-identity webhook's to set")

            images = {image_name(ct.get("image", "")) for _, ct in containers(template)}
            labels = (template.get("metadata") or {}).get("labels") or {}
            account_name = spec.get("serviceAccountName")
            account = objects.get(("ServiceAccount", account_name)) if account_name else None
            client_id = ((account or {}).get("metadata", {}).get("annotations") or {}).get(WI_CLIENT_ID)
            if images and images <= NO_TOKEN_IMAGES:
                # Acquires no token: it gets no identity either (least privilege).
                c.check(labels.get(WI_USE) != "true", overlay, ref(obj), f"{path}.metadata.labels[{WI_USE}]",
                        f"{', '.join(sorted(images))} acquires no token: it should get no workload identity")
                continue
            c.check(labels.get(WI_USE) == "true", overlay, ref(obj), f"{path}.metadata.labels[{WI_USE}]",
                    f'must be "true" (is {labels.get(WI_USE)!r}): without it the webhook leaves these pods without a token')
            if c.check(bool(account_name), overlay, ref(obj), f"{path}.spec.serviceAccountName",
                       "must name the ServiceAccount that carries the client-id annotation"):
                if c.check(account is not None, overlay, ref(obj), f"{path}.spec.serviceAccountName",
                           f"ServiceAccount/{account_name} is not in the overlay"):
                    c.check(bool(client_id), overlay, f"ServiceAccount/{account_name}",
                            f"metadata.annotations[{WI_CLIENT_ID}]", f"must name the app's client ID (used by {ref(obj)})")
            for where, container in containers(template):
                if image_name(container.get("image", "")) == "caller-service":
                    c.check(env_value(objects, container, "CALLER__IDENTITY__CREDENTIAL") == "workload_identity",
                            overlay, ref(obj), f"{path}.spec.{where}.env[CALLER__IDENTITY__CREDENTIAL]",
                            "must be workload_identity")


def check_overlay(c: Checks, overlay: str, objects: list[dict], version: str | None) -> None:
    if version:
        check_schema(c, overlay, objects, version)
    by_name = index(objects)
    for obj in objects:
        for path, template in pod_templates(obj):
            check_pod_security(c, overlay, obj, path, template)
    check_api(c, overlay, by_name)
    check_database(c, overlay, by_name)
    check_cronjobs(c, overlay, by_name)
    if overlay == "entra":
        check_entra(c, overlay, by_name)


# ---- 3. the settings through the binaries -------------------------------------------------------

NO_SUCH_JOB = "k8s-check-no-such-job"
PLACEHOLDER = re.compile(r"REPLACE-with-[A-Za-z-]+")
STAND_IN = "a1000000-0000-4000-8000-000000000001"


def container_env(objects: dict, container: dict) -> dict[str, str]:
    """The variables the manifests give the container, as the kubelet would: envFrom ConfigMaps
    and Secrets, then env in order, a secretKeyRef or configMapKeyRef read from the rendered
    object, a value's $(VAR) references expanded from the variables defined before it."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            env.update((objects.get(("ConfigMap", source["configMapRef"]["name"])) or {}).get("data") or {})
        if "secretRef" in source:
            secret = objects.get(("Secret", source["secretRef"]["name"])) or {}
            env.update({k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()})
            env.update(secret.get("stringData") or {})
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
            continue
        source = var.get("valueFrom") or {}
        if "secretKeyRef" in source:
            value = secret_value(objects.get(("Secret", source["secretKeyRef"].get("name"))) or {}, source["secretKeyRef"].get("key"))
        elif "configMapKeyRef" in source:
            config_map = objects.get(("ConfigMap", source["configMapKeyRef"].get("name"))) or {}
            value = (config_map.get("data") or {}).get(source["configMapKeyRef"].get("key"))
        else:
            value = None
        if value is not None:
            env[var["name"]] = value
    return env


def check_with_binaries(c: Checks, overlay: str, objects: dict, binaries: str, repo: str) -> None:
    """Each service's shipped settings (its --config file from the ConfigMap, its variables from
    env, ConfigMaps and Secrets) through the service's own parser, which refuses an unknown key:
    `api-service check`, `entra-emulator check`, and for caller-service `once` with a job name
    that is not there (its settings and identity are checked first, then it stops at the name,
    before any network). Container-only paths are swapped for local ones; in the entra overlay the
    placeholders stand in as a GUID and the workload-identity webhook's variables are added, as
    it would add them."""
    for obj in objects.values():
        for path, template in pod_templates(obj):
            labels = (template.get("metadata") or {}).get("labels") or {}
            account = objects.get(("ServiceAccount", (template.get("spec") or {}).get("serviceAccountName"))) or {}
            annotations = account.get("metadata", {}).get("annotations") or {}
            for where, container in containers(template):
                image = image_name(container.get("image", ""))
                if image not in ("api-service", "caller-service", "entra-emulator"):
                    continue
                field = f"{path}.spec.{where}"
                text, source = config_file(objects, template, container)
                if not c.check(text is not None, overlay, ref(obj), f"{field}.args", source):
                    continue
                env = container_env(objects, container)
                if labels.get(WI_USE) == "true":
                    env.update({
                        "AZURE_CLIENT_ID": annotations.get(WI_CLIENT_ID, ""),
                        "AZURE_TENANT_ID": annotations.get("azure.workload.identity/tenant-id", STAND_IN),
                        "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token",
                        "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/",
                    })
                text = PLACEHOLDER.sub(STAND_IN, text)
                env = {k: PLACEHOLDER.sub(STAND_IN, v) for k, v in env.items()}
                with tempfile.TemporaryDirectory() as tmp:
                    settings = os.path.join(tmp, "settings.toml")
                    with open(settings, "w", encoding="utf-8") as f:
                        f.write(text)
                    if image == "caller-service":
                        command, expect = ["once", NO_SUCH_JOB], f"no job named `{NO_SUCH_JOB}`"
                    else:
                        command, expect = ["check"], None
                    if image == "entra-emulator":
                        env["EMULATOR__DIRECTORY"] = os.path.join(repo, "entra-emulator/demo/directory.toml")
                        env["EMULATOR__DATA_DIR"] = os.path.join(tmp, "data")
                    run = subprocess.run([os.path.join(binaries, image), "--config", settings, *command],
                                         env={"PATH": os.environ.get("PATH", ""), **env},
                                         capture_output=True, text=True, timeout=60)
                    said = (run.stderr.strip() or run.stdout.strip()).splitlines()
                    said = said[-1] if said else f"exit status {run.returncode}"
                    good = (expect in run.stderr) if expect else run.returncode == 0
                    c.check(good, overlay, ref(obj), f"{field} settings",
                            f"refused by {image}'s own parser ({source} and the container's variables): {said}")


# ---- 3. self-test -------------------------------------------------------------------------------


def find(objects: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objects if o.get("kind") == kind and o["metadata"]["name"] == name)


def cronjob_pod(objects):
    return find(objects, "CronJob", "writer")["spec"]["jobTemplate"]["spec"]["template"]


def api_pod(objects):
    return find(objects, "Deployment", "api")["spec"]["template"]


def api_toml(objects):
    return next(o for o in objects if o.get("kind") == "ConfigMap" and "api.toml" in (o.get("data") or {}))


def api_env(objects, name):
    return next(v for v in api_pod(objects)["spec"]["containers"][0]["env"] if v["name"] == name)


def postgres_container(objects):
    return find(objects, "StatefulSet", "postgres")["spec"]["template"]["spec"]["containers"][0]


def with_sqlite_emptydir(objects):
    """The API pod as it was before PostgreSQL: its SQLite directory on an emptyDir."""
    spec = api_pod(objects)["spec"]
    spec["containers"][0].setdefault("volumeMounts", []).append({"name": "data", "mountPath": "/var/lib/api-service"})
    spec.setdefault("volumes", []).append({"name": "data", "emptyDir": {"sizeLimit": "256Mi"}})


def api_database_url(objects, url):
    """API__DATABASE__URL set to `url` wherever the overlay sets it (env or a ConfigMap)."""
    for var in api_pod(objects)["spec"]["containers"][0].get("env") or []:
        if var["name"] == "API__DATABASE__URL":
            var["value"] = url
            return
    config_map = next(o for o in objects if o.get("kind") == "ConfigMap" and "API__DATABASE__URL" in (o.get("data") or {}))
    config_map["data"]["API__DATABASE__URL"] = url


def secret_data(objects, name_prefix, key, value):
    secret = next(o for o in objects if o.get("kind") == "Secret" and o["metadata"]["name"].startswith(name_prefix))
    secret["data"][key] = base64.b64encode(value.encode()).decode()


BREAKS = [
    # (overlay, what is broken, how, a pattern the failure line must match, what the check needs:
    # None, "schema" or "binaries")
    ("entra", "the CronJob's pod template without the workload-identity label",
     lambda o: cronjob_pod(o)["metadata"].get("labels", {}).pop(WI_USE, None),
     r"CronJob/writer: spec\.jobTemplate\.spec\.template\.metadata\.labels\[azure\.workload\.identity/use\]", None),
    ("entra", "the reader's ServiceAccount without its client-id annotation",
     lambda o: find(o, "ServiceAccount", "reader")["metadata"].get("annotations", {}).pop(WI_CLIENT_ID, None),
     r"ServiceAccount/reader: metadata\.annotations\[azure\.workload\.identity/client-id\]", None),
    ("entra", "a Secret in the entra overlay",
     lambda o: o.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "leak", "namespace": "m2m-entra"},
                         "stringData": {"AZURE_CLIENT_SECRET": "x"}}),
     r"Secret/leak: kind", None),
    ("entra", "a secretKeyRef in the reader",
     lambda o: find(o, "Deployment", "reader")["spec"]["template"]["spec"]["containers"][0].setdefault("env", []).append(
         {"name": "AZURE_CLIENT_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}),
     r"Deployment/reader: .*secretKeyRef", None),
    ("emulator", "one API replica",
     lambda o: find(o, "Deployment", "api")["spec"].update(replicas=1), r"Deployment/api: spec\.replicas", None),
    ("emulator", "a termination grace within the shutdown timeout",
     lambda o: api_pod(o)["spec"].update(terminationGracePeriodSeconds=30),
     r"Deployment/api: spec\.template\.spec\.terminationGracePeriodSeconds", None),
    ("emulator", "a longer shutdown timeout in the shipped api.toml",
     lambda o: api_toml(o)["data"].update({"api.toml": api_toml(o)["data"]["api.toml"].replace(
         "shutdown_timeout_secs = 30", "shutdown_timeout_secs = 60")}),
     r"Deployment/api: spec\.template\.spec\.terminationGracePeriodSeconds: is \d+: must exceed server\.shutdown_timeout_secs 60", None),
    ("emulator", "no PodDisruptionBudget",
     lambda o: o.remove(find(o, "PodDisruptionBudget", "api")), r"Deployment/api: PodDisruptionBudget", None),
    ("emulator", "a writable root filesystem",
     lambda o: api_pod(o)["spec"]["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False),
     r"Deployment/api: .*readOnlyRootFilesystem", None),
    ("emulator", "overlapping CronJob runs",
     lambda o: find(o, "CronJob", "writer")["spec"].update(concurrencyPolicy="Allow"), r"CronJob/writer: spec\.concurrencyPolicy", None),
    ("emulator", "a CronJob with no deadline",
     lambda o: find(o, "CronJob", "writer")["spec"]["jobTemplate"]["spec"].pop("activeDeadlineSeconds", None),
     r"CronJob/writer: spec\.jobTemplate\.spec\.activeDeadlineSeconds", None),
    ("emulator", "a misspelt field (strict schema)",
     lambda o: api_pod(o)["spec"]["containers"][0]["readinessProbe"].update(periodSecond=5),
     r"Deployment/api: spec\.template\.spec\.containers\.0\.readinessProbe: not valid", "schema"),
    ("emulator", "a misspelt key in the shipped api.toml",
     lambda o: api_toml(o)["data"].update({"api.toml": api_toml(o)["data"]["api.toml"].replace("workers = 2", "worker = 2")}),
     r"Deployment/api: spec\.template\.spec\.containers\[api\] settings: refused by api-service's own parser", "binaries"),
    # The API's database.
    ("emulator", "an SQLite emptyDir back in the API pod",
     with_sqlite_emptydir, r"Deployment/api: .*volumeMounts\[data\]: an emptyDir at /var/lib/api-service", None),
    ("entra", "an SQLite emptyDir back in the API pod",
     with_sqlite_emptydir, r"Deployment/api: .*volumeMounts\[data\]: an emptyDir at /var/lib/api-service", None),
    ("entra", "one API replica",
     lambda o: find(o, "Deployment", "api")["spec"].update(replicas=1), r"Deployment/api: spec\.replicas", None),
    ("entra", "no database URL (each replica back on its own SQLite file)",
     lambda o: next(c for c in o if c.get("kind") == "ConfigMap" and "API__DATABASE__URL" in (c.get("data") or {}))["data"].pop("API__DATABASE__URL"),
     r"Deployment/api: database\.url: must be a postgres:// URL", None),
    ("emulator", "an sqlite: database URL",
     lambda o: api_database_url(o, "sqlite:/var/lib/api-service/tasks.db"), r"Deployment/api: database\.url: must be a postgres:// URL", None),
    ("emulator", "no PostgreSQL StatefulSet",
     lambda o: o.remove(find(o, "StatefulSet", "postgres")), r"StatefulSet/\*: image: exactly one StatefulSet must run postgres", None),
    ("emulator", "PostgreSQL without its volumeClaimTemplate",
     lambda o: find(o, "StatefulSet", "postgres")["spec"].pop("volumeClaimTemplates"), r"StatefulSet/postgres: spec\.volumeClaimTemplates", None),
    ("emulator", "two PostgreSQL replicas",
     lambda o: find(o, "StatefulSet", "postgres")["spec"].update(replicas=2), r"StatefulSet/postgres: spec\.replicas", None),
    ("emulator", "PGDATA at the volume's root",
     lambda o: next(v for v in postgres_container(o)["env"] if v["name"] == "PGDATA").update(value="/var/lib/postgresql/data"),
     r"StatefulSet/postgres: .*env\[PGDATA\]: is /var/lib/postgresql/data: must be a subdirectory", None),
    ("emulator", "a PostgreSQL readiness probe that is not pg_isready",
     lambda o: postgres_container(o).update(readinessProbe={"tcpSocket": {"port": 5432}}),
     r"StatefulSet/postgres: .*readinessProbe\.exec\.command: must run pg_isready", None),
    ("emulator", "a StatefulSet governed by the ClusterIP Service",
     lambda o: find(o, "StatefulSet", "postgres")["spec"].update(serviceName="postgres"),
     r"StatefulSet/postgres: spec\.serviceName: must name a headless Service", None),
    ("emulator", "the database URL's host not a Service",
     lambda o: api_env(o, "API__DATABASE__URL").update(value="postgres://tasks:$(DB_PASSWORD)@db:5432/tasks"),
     r"Deployment/api: .*env\[API__DATABASE__URL\]: host db:5432 must be a ClusterIP Service", None),
    ("emulator", "the database URL naming another user than the server creates",
     lambda o: api_env(o, "API__DATABASE__URL").update(value="postgres://postgres:$(DB_PASSWORD)@postgres:5432/tasks"),
     r"Deployment/api: .*env\[API__DATABASE__URL\]: names 'postgres' where StatefulSet/postgres creates POSTGRES_USER", None),
    ("emulator", "the password written in the database URL",
     lambda o: api_env(o, "API__DATABASE__URL").update(value="postgres://tasks:hunter2@postgres:5432/tasks"),
     r"Deployment/api: .*env\[API__DATABASE__URL\]: the password must be a \$\(VAR\) reference", None),
    ("emulator", "the password variable as a plain value, not from a Secret",
     lambda o: api_env(o, "DB_PASSWORD").update(value="hunter2") or api_env(o, "DB_PASSWORD").pop("valueFrom"),
     r"Deployment/api: .*env\[DB_PASSWORD\]\.valueFrom\.secretKeyRef: \$\(DB_PASSWORD\) in API__DATABASE__URL must come from a Secret", None),
    ("emulator", "the URL before the password variable (not expanded)",
     lambda o: api_pod(o)["spec"]["containers"][0]["env"].reverse(),
     r"Deployment/api: .*env\[DB_PASSWORD\]: must come before API__DATABASE__URL", None),
    ("emulator", "the API's password from another key than the server's",
     lambda o: api_env(o, "DB_PASSWORD")["valueFrom"]["secretKeyRef"].update(key="PASSWORD"),
     r"Deployment/api: .*env\[DB_PASSWORD\]\.valueFrom\.secretKeyRef: is postgres-\w+/PASSWORD: must be the Secret key", None),
    ("emulator", "a password that needs percent-encoding in the URL",
     lambda o: secret_data(o, "postgres-", "POSTGRES_PASSWORD", "p@ss/word"),
     r"Secret/postgres-\w+: data\.POSTGRES_PASSWORD: goes into a URL as it is", None),
    ("emulator", "a database URL asking for TLS",
     lambda o: api_env(o, "API__DATABASE__URL").update(value=api_env(o, "API__DATABASE__URL")["value"] + "?sslmode=require"),
     r"Deployment/api: spec\.template\.spec\.containers\[api\] settings: refused by api-service's own parser .*sslmode=require", "binaries"),
    ("entra", "a variable the caller does not know",
     lambda o: cronjob_pod(o)["spec"]["containers"][0]["env"].append({"name": "CALLER__IDENTITY__KIND", "value": "x"}),
     r"CronJob/writer: .*settings: refused by caller-service's own parser", "binaries"),
]


def self_test(renderings: dict[str, list[dict]], version: str, binaries: str | None, repo: str) -> tuple[int, list[str]]:
    ran, problems = 0, []
    for overlay, what, breaks, pattern, needs in BREAKS:
        if needs == "binaries" and not binaries:
            continue
        objects = copy.deepcopy(renderings[overlay])
        try:
            breaks(objects)
        except (KeyError, IndexError, StopIteration, ValueError) as e:
            problems.append(f"FAIL self-test: {overlay} with {what}: the rendering has no {e!r} to break")
            continue
        c = Checks()
        # The schema and the binaries only for the breaks that are about them: they are the slow part.
        check_overlay(c, overlay, objects, version if needs == "schema" else None)
        if needs == "binaries":
            check_with_binaries(c, overlay, index(objects), binaries, repo)
        ran += 1
        hits = [line for line in c.failures if re.search(pattern, line)]
        if hits:
            print(f"self-test: {overlay} with {what}: caught: {hits[0]}")
        else:
            problems.append(f"FAIL self-test: {overlay} with {what}: not caught (failures: {c.failures or 'none'})")
    return ran, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes-version", required=True)
    parser.add_argument("--self-test", action="store_true")
    parser.add_argument("--binaries", help="a folder with api-service, caller-service and entra-emulator")
    parser.add_argument("--repo", default=".", help="the repository (for the emulator's demo directory)")
    parser.add_argument("renderings", nargs="+", metavar="OVERLAY=FILE")
    args = parser.parse_args()
    renderings = {}
    for item in args.renderings:
        overlay, _, path = item.partition("=")
        with open(path, encoding="utf-8") as f:
            renderings[overlay] = [o for o in yaml.safe_load_all(f) if o]
    c = Checks()
    for overlay, objects in renderings.items():
        check_overlay(c, overlay, objects, args.kubernetes_version)
        print(f"k8s-check: {overlay}: {len(objects)} objects checked against Kubernetes {args.kubernetes_version} (strict)")
    binaries = args.binaries
    if binaries:
        missing = [b for b in ("api-service", "caller-service", "entra-emulator")
                   if not os.access(os.path.join(binaries, b), os.X_OK)]
        if missing:
            print(f"k8s-check: skipped: the settings through the services' own parsers: no {', '.join(missing)} "
                  f"in {binaries} (cargo build -p api-service -p caller-service -p entra-emulator)")
            binaries = None
        else:
            before = len(c.failures)
            for overlay, objects in renderings.items():
                check_with_binaries(c, overlay, index(objects), binaries, args.repo)
            if len(c.failures) == before:
                print(f"k8s-check: every service's settings accepted by its own parser ({binaries})")
    for line in c.failures:
        print(line)
    ran, problems = self_test(renderings, args.kubernetes_version, binaries, args.repo) if args.self_test else (0, [])
    for line in problems:
        print(line)
    print(f"k8s-check: {c.passed + ran - len(problems)} passed, {len(c.failures) + len(problems)} failed")
    return 1 if c.failures or problems else 0


if __name__ == "__main__":
    sys.exit(main())
