"""deploy/k8s: render every kustomization, validate each object against Kubernetes' schemas
(kubernetes-validate, offline) or a small schema for the CRDs, and check the promises of
deploy/: hardened pods, probes, requests and limits, the worker's grace period, migrations as a
versioned Job, and references that resolve.

Rendering uses tests/deploy/kustomize_lite.py; with kustomize or kubectl on PATH the real tool's
output must be identical.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from cryptography.fernet import Fernet

from calendly_brevo import queueing
from calendly_brevo.config import load_settings
from tests.deploy.kustomize_lite import pod_template, render

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
KUBERNETES_VERSION = "1.33.0"
UID = 10001
SECRET_NAME = "calendly-brevo"


def _with_hpa(tmp: Path) -> Path:
    """base + components/hpa + components/monitoring: the documented KEDA-free variant."""
    tree = tmp / "k8s"
    shutil.copytree(K8S, tree)
    overlay = tree / "overlays" / "hpa"
    overlay.mkdir()
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["../../base"],
        "components": ["../../components/hpa", "../../components/monitoring"],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return overlay


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    hpa = _with_hpa(tmp_path_factory.mktemp("kustomize"))
    return {"base": render(BASE), "production": render(PRODUCTION), "hpa": render(hpa)}


@pytest.fixture(params=["base", "production", "hpa"])
def objects(request: pytest.FixtureRequest, rendered: dict[str, Any]) -> list[dict[str, Any]]:
    return list(rendered[request.param])


def _find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"])]


def _one(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = _find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _templates(objs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objs:
        template = pod_template(obj)
        if template is not None:
            yield f"{obj['kind']}/{obj['metadata']['name']}", template


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _container_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return int(next(p["containerPort"] for p in container["ports"] if p.get("name") == port))


# --- rendering ------------------------------------------------------------------------------------
def _real_kustomize(directory: Path) -> list[dict[str, Any]] | None:
    if shutil.which("kustomize"):
        cmd = ["kustomize", "build", str(directory)]
    elif shutil.which("kubectl"):
        cmd = ["kubectl", "kustomize", str(directory)]
    else:
        return None
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.mark.parametrize("variant", ["base", "production", "hpa"])
def test_the_python_renderer_agrees_with_the_real_kustomize(
    variant: str, rendered: dict[str, Any], tmp_path: Path
) -> None:
    directory = {"base": BASE, "production": PRODUCTION}.get(variant) or _with_hpa(tmp_path)
    real = _real_kustomize(directory)
    if real is None:
        pytest.skip("neither kustomize nor kubectl is on PATH")

    def key(o: dict[str, Any]) -> tuple[str, str]:
        return o["kind"], o["metadata"]["name"]

    assert sorted(rendered[variant], key=key) == sorted(real, key=key)


def test_every_object_is_valid_for_kubernetes_or_its_crd_schema(
    objects: list[dict[str, Any]],
) -> None:
    for obj in objects:
        schema = CRD_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
        if schema is not None:
            jsonschema.validate(obj, schema)
        else:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_base_is_namespace_agnostic_and_free_of_crds(rendered: dict[str, Any]) -> None:
    for obj in rendered["base"]:
        assert "namespace" not in obj["metadata"], obj["metadata"]["name"]
        assert (obj["apiVersion"], obj["kind"]) not in CRD_SCHEMAS


def test_the_production_overlay_has_everything_in_its_namespace(rendered: dict[str, Any]) -> None:
    objs = rendered["production"]
    namespace = _one(objs, "Namespace", "calendly-brevo")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objs:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "calendly-brevo", obj["metadata"]["name"]
    assert _one(objs, "Deployment", "calendly-brevo-receiver")["spec"]["replicas"] == 3
    kinds = {o["kind"] for o in objs}
    assert {"ScaledObject", "ServiceMonitor", "PrometheusRule"} <= kinds
    assert "HorizontalPodAutoscaler" not in kinds


# --- pods -----------------------------------------------------------------------------------------
def test_every_pod_runs_as_the_image_user_with_a_read_only_root_and_no_privileges(
    objects: list[dict[str, Any]],
) -> None:
    for where, template in _templates(objects):
        spec = template["spec"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, where
        assert pod["runAsUser"] == UID, where
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is False, where
        for container in _containers(spec):
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True, where
            assert sc.get("runAsUser", UID) == UID, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in sc["capabilities"], where
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
            assert "privileged" not in sc, where


def test_every_container_has_cpu_and_memory_requests_and_limits(
    objects: list[dict[str, Any]],
) -> None:
    for where, template in _templates(objects):
        for container in _containers(template["spec"]):
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[kind]), f"{where}: {kind}"


def test_every_pod_writes_only_to_empty_dirs(objects: list[dict[str, Any]]) -> None:
    for where, template in _templates(objects):
        spec = template["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in _containers(spec):
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]["name"]], where
            for mount in mounts.values():
                volume = volumes[mount["name"]]
                assert "emptyDir" in volume or mount.get("readOnly") is True, (where, mount)
            multiproc = {e["name"]: e.get("value") for e in container.get("env", [])}.get(
                "PROMETHEUS_MULTIPROC_DIR"
            )
            if multiproc:
                assert "emptyDir" in volumes[mounts[multiproc]["name"]], where


def test_every_image_is_the_released_one_with_a_pinned_tag(objects: list[dict[str, Any]]) -> None:
    for where, template in _templates(objects):
        for container in _containers(template["spec"]):
            image = container["image"]
            assert re.fullmatch(r"[\w./-]+/calendly-brevo(:[\w.-]+|@sha256:[0-9a-f]{64})", image)
            assert not image.endswith(":latest"), where


def test_the_receiver_probes_healthz_for_liveness_and_readyz_for_readiness(
    objects: list[dict[str, Any]],
) -> None:
    deployment = _one(objects, "Deployment", "calendly-brevo-receiver")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["receiver"]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert _container_port(container, get["port"]) == 8080


def test_the_worker_probes_healthz_on_its_metrics_port(objects: list[dict[str, Any]]) -> None:
    deployment = _one(objects, "Deployment", "calendly-brevo-worker")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "worker"
    env = {e["name"]: e.get("value") for e in container["env"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz"
        assert _container_port(container, get["port"]) == int(env["METRICS_PORT"]) == 9191


def _rendered_settings(objs: list[dict[str, Any]], tmp_path: Path) -> Any:
    """The Settings the pods get: config.yaml from the rendered ConfigMap, loaded by the app."""
    (cm,) = [
        o
        for o in objs
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("calendly-brevo-config")
    ]
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    example = yaml.safe_load((BASE / "secret.example.yaml").read_text())["stringData"]
    # The example's placeholders are refused at start (tests/security/test_weak_secrets.py):
    # an operator fills them in, as here.
    filled = {
        "CALENDLY_WEBHOOK_SIGNING_KEY": "k8s-test-signing-key-Qm8vR2xT5nW9pL3kZ7",
        "CONNECTOR_ADMIN_TOKEN": "k8s-test-admin-token-Vb7Nq2Lw9Xr4Tz6Hm1",
        "CONNECTOR_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }
    return load_settings(path, env={k: v for k, v in example.items() if v} | filled)


def test_the_worker_grace_period_outlasts_its_shutdown_timeout(
    objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    settings = _rendered_settings(objects, tmp_path)
    worker = _one(objects, "Deployment", "calendly-brevo-worker")["spec"]["template"]["spec"]
    grace = worker["terminationGracePeriodSeconds"]
    assert grace > settings.worker.shutdown_timeout_seconds
    assert grace - settings.worker.shutdown_timeout_seconds >= 5, "leave a margin for teardown"


def test_the_receiver_grace_period_covers_its_pre_stop_sleep_and_shutdown(
    objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    settings = _rendered_settings(objects, tmp_path)
    spec = _one(objects, "Deployment", "calendly-brevo-receiver")["spec"]["template"]["spec"]
    sleep = int(spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert spec["terminationGracePeriodSeconds"] > sleep + settings.server.shutdown_timeout_seconds


def test_the_shipped_config_loads_and_uses_redis_and_postgres(tmp_path: Path) -> None:
    settings = _rendered_settings(render(BASE), tmp_path)
    assert not settings.embedded
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.server.host == "0.0.0.0"  # noqa: S104 - inside a container
    assert settings.worker.metrics_port == 9191


def test_every_required_config_variable_is_a_key_of_the_example_secret() -> None:
    def strings(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for value in node.values():
                yield from strings(value)
        elif isinstance(node, str):
            yield node

    config = yaml.safe_load((BASE / "config.yaml").read_text())
    required = {v for s in strings(config) for v in re.findall(r"\$\{(\w+)\}", s)}
    assert required, "config.yaml takes its secrets from the environment"
    secret = yaml.safe_load((BASE / "secret.example.yaml").read_text())
    assert required <= set(secret["stringData"]), required - set(secret["stringData"])


# --- secrets: each process gets the keys it reads, no more (issue 13 point 11) --------------------
#: Container name → the Secret keys it reads, and why. The receiver verifies webhooks, serves
#: the admin API (which calls Calendly for scheduling links) and finishes OAuth; the worker calls
#: Brevo; webhooks-check calls Calendly and may store a new signing key; prune and migrate only
#: touch the database. A change here is a security decision: keep secret.example.yaml's table,
#: README and SECURITY.md in step.
SECRET_NEEDS: dict[str, dict[str, str]] = {
    "receiver": {
        "CALENDLY_WEBHOOK_SIGNING_KEY": "verifies webhooks",
        "CONNECTOR_ADMIN_TOKEN": "admin API and OAuth start",
        "CONNECTOR_ENCRYPTION_KEY": "stored signing keys, OAuth state and tokens",
        "CALENDLY_CLIENT_ID": "OAuth start and callback",
        "CALENDLY_CLIENT_SECRET": "OAuth callback: the token exchange",
        "CALENDLY_ACCESS_TOKEN": "POST /admin/scheduling-links calls Calendly",
        "DATABASE_URL": "stored keys, OAuth tokens, /admin/status",
        "REDIS_URL": "the queue",
    },
    "worker": {
        "BREVO_API_KEY": "the Brevo calls",
        "DATABASE_URL": "dedup, invitee state, dead letters",
        "REDIS_URL": "the queue and the token bucket",
    },
    "webhooks-check": {
        "CALENDLY_ACCESS_TOKEN": "Calendly's webhook API",
        "CALENDLY_CLIENT_ID": "OAuth: refreshing the token",
        "CALENDLY_CLIENT_SECRET": "OAuth: refreshing the token",
        "CONNECTOR_ENCRYPTION_KEY": "stores a regenerated signing key, reads OAuth tokens",
        "DATABASE_URL": "the stored subscription and keys",
    },
    "prune": {"DATABASE_URL": "the payloads it prunes"},
    "migrate": {"DATABASE_URL": "the schema"},
}


def _secret_env(container: dict[str, Any]) -> dict[str, str]:
    """Environment variable → Secret key, for the secretKeyRef entries of a container."""
    found = {}
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            found[var["name"]] = ref["key"]
    return found


def test_every_process_gets_only_the_secret_keys_it_needs(objects: list[dict[str, Any]]) -> None:
    seen = set()
    for where, template in _templates(objects):
        for container in _containers(template["spec"]):
            sources = container.get("envFrom", [])
            assert not [s for s in sources if "secretRef" in s], f"{where}: the whole Secret"
            assert not [v for v in template["spec"]["volumes"] if "secret" in v], where
            env = _secret_env(container)
            assert all(name == key for name, key in env.items()), where
            assert set(env) == set(SECRET_NEEDS[container["name"]]), where
            seen.add(container["name"])
    assert seen == set(SECRET_NEEDS)


def test_the_receiver_has_no_brevo_key_and_the_worker_no_admin_token_or_signing_key(
    objects: list[dict[str, Any]],
) -> None:
    def env_of(name: str) -> set[str]:
        spec = _one(objects, "Deployment", name)["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        return set(_secret_env(container)) | {e["name"] for e in container.get("env", [])}

    receiver, worker = env_of("calendly-brevo-receiver"), env_of("calendly-brevo-worker")
    assert "BREVO_API_KEY" not in receiver
    assert not {"CONNECTOR_ADMIN_TOKEN", "CALENDLY_WEBHOOK_SIGNING_KEY"} & worker
    assert (
        not {"CONNECTOR_ENCRYPTION_KEY", "CALENDLY_ACCESS_TOKEN", "CALENDLY_CLIENT_SECRET"} & worker
    )


def test_every_example_secret_key_is_read_by_some_process_or_keda() -> None:
    example = set(yaml.safe_load((BASE / "secret.example.yaml").read_text())["stringData"])
    read = {key for needs in SECRET_NEEDS.values() for key in needs}
    assert example - read == {"REDIS_ADDRESS", "REDIS_PASSWORD"}  # components/keda
    assert read <= example


@pytest.mark.parametrize("process", sorted(SECRET_NEEDS))
def test_each_process_starts_with_only_its_own_secret_keys(process: str, tmp_path: Path) -> None:
    """The shipped config loads with exactly the keys a process gets, and what that process
    checks before it works passes: the receiver has a signing key and the admin token, the
    worker a Brevo key and Redis (so it does not run dry), the others their database."""
    objs = render(BASE)
    (cm,) = [o for o in objs if o["metadata"]["name"].startswith("calendly-brevo-config")]
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    example = yaml.safe_load((BASE / "secret.example.yaml").read_text())["stringData"]
    filled = example | {
        "CALENDLY_WEBHOOK_SIGNING_KEY": "k8s-test-signing-key-Qm8vR2xT5nW9pL3kZ7",
        "CONNECTOR_ADMIN_TOKEN": "k8s-test-admin-token-Vb7Nq2Lw9Xr4Tz6Hm1",
        "CONNECTOR_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "BREVO_API_KEY": "xkeysib-k8s-test-brevo-key-Lw9Xr4Tz6Hm1",
    }
    env = {key: filled[key] for key in SECRET_NEEDS[process] if filled[key]}
    settings = load_settings(path, env=env)
    assert settings.database_url.startswith("postgresql+psycopg://")
    if process == "receiver":
        assert settings.calendly.webhook.keys and settings.security.admin_token is not None
        assert settings.brevo.api_key is None
    if process == "worker":
        assert not settings.embedded
        settings.require_brevo()
        assert not settings.dry_run
        assert settings.security.admin_token is None and not settings.calendly.webhook.keys


# --- jobs -----------------------------------------------------------------------------------------
def test_migrations_run_as_a_job_named_after_the_release_and_cleaned_up(
    objects: list[dict[str, Any]],
) -> None:
    (job,) = _find(objects, "Job")
    assert "generateName" not in job["metadata"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate"]
    tag = container["image"].rsplit(":", 1)[1]
    assert job["metadata"]["name"] == "calendly-brevo-migrate-" + re.sub(r"[^a-z0-9]", "-", tag), (
        "rename the migrations Job when the image tag changes (see base/migrate-job.yaml)"
    )
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_cron_jobs_repair_webhooks_every_15_minutes_and_prune_daily(
    objects: list[dict[str, Any]],
) -> None:
    crons = {c["metadata"]["name"]: c for c in _find(objects, "CronJob")}
    check = crons["calendly-brevo-webhooks-check"]["spec"]
    prune = crons["calendly-brevo-prune"]["spec"]
    assert check["schedule"] == "*/15 * * * *"
    assert re.fullmatch(r"\d+ \d+ \* \* \*", prune["schedule"])
    args = {
        name: spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
        for name, spec in (("check", check), ("prune", prune))
    }
    assert args == {
        "check": ["webhooks", "check", "--repair"],
        "prune": ["prune", "--older-than", "30d"],
    }
    for spec in (check, prune):
        assert spec["concurrencyPolicy"] == "Forbid"


# --- references -----------------------------------------------------------------------------------
def test_every_config_map_and_secret_reference_resolves(objects: list[dict[str, Any]]) -> None:
    config_maps = {o["metadata"]["name"] for o in _find(objects, "ConfigMap")}
    for where, template in _templates(objects):
        spec = template["spec"]
        for volume in spec["volumes"]:
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, where
        example = set(yaml.safe_load((BASE / "secret.example.yaml").read_text())["stringData"])
        for container in _containers(spec):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, where
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["name"] == SECRET_NAME, where
                    assert ref["key"] in example, (where, ref["key"])
        assert spec["serviceAccountName"] in {
            o["metadata"]["name"] for o in _find(objects, "ServiceAccount")
        }


def test_every_service_selects_pods_on_a_named_container_port(
    objects: list[dict[str, Any]],
) -> None:
    pods = [t for _, t in _templates(objects)]
    for service in _find(objects, "Service"):
        selected = [
            t for t in pods if _matches(service["spec"]["selector"], t["metadata"]["labels"])
        ]
        assert selected, service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            for template in selected:
                names = {p["name"] for c in template["spec"]["containers"] for p in c["ports"]}
                assert port["targetPort"] in names, (service["metadata"]["name"], port)


def test_the_worker_metrics_service_is_headless(objects: list[dict[str, Any]]) -> None:
    service = _one(objects, "Service", "calendly-brevo-worker")
    assert service["spec"]["clusterIP"] == "None"
    assert [p["port"] for p in service["spec"]["ports"]] == [9191]


def _receiver_ports(objs: list[dict[str, Any]]) -> tuple[int, int]:
    """(public, admin) container ports of the receiver, as its PORT and ADMIN_PORT say."""
    deployment = _one(objs, "Deployment", "calendly-brevo-receiver")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    public, admin = int(env["PORT"]), int(env["ADMIN_PORT"])
    assert {public, admin} <= {p["containerPort"] for p in container["ports"]}
    assert public != admin
    return public, admin


def _service_target(objs: list[dict[str, Any]], service: str, port: int | str) -> int:
    """The receiver container port a Service port (by name or number) lands on."""
    spec = _one(objs, "Service", service)["spec"]
    (entry,) = [p for p in spec["ports"] if port in (p["name"], p["port"])]
    deployment = _one(objs, "Deployment", "calendly-brevo-receiver")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return _container_port(container, entry["targetPort"])


def test_the_ingress_routes_only_the_webhook_and_the_oauth_callback_to_the_public_port(
    objects: list[dict[str, Any]],
) -> None:
    ingress = _one(objects, "Ingress", "calendly-brevo-receiver")
    public, admin = _receiver_ports(objects)
    paths = set()
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            paths.add((path["path"], path["pathType"]))
            backend = path["backend"]["service"]
            port = backend["port"].get("name") or backend["port"]["number"]
            assert _service_target(objects, backend["name"], port) == public, path
    assert "defaultBackend" not in ingress["spec"]
    # Exact paths: /oauth/calendly/start, /admin/* and /metrics are not even on the public port,
    # and no prefix could reach them if they were.
    assert paths == {("/webhooks/calendly", "Exact"), ("/oauth/calendly/callback", "Exact")}
    assert admin != public


def test_the_disruption_budget_keeps_a_receiver_while_there_are_two(
    objects: list[dict[str, Any]],
) -> None:
    pdb = _one(objects, "PodDisruptionBudget", "calendly-brevo-receiver")
    receiver = _one(objects, "Deployment", "calendly-brevo-receiver")
    labels = receiver["spec"]["template"]["metadata"]["labels"]
    assert _matches(pdb["spec"]["selector"]["matchLabels"], labels)
    assert receiver["spec"]["replicas"] > pdb["spec"]["minAvailable"]


def test_network_policies_open_the_public_port_and_the_admin_port_only_to_prometheus_and_peers(
    objects: list[dict[str, Any]],
) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in _find(objects, "NetworkPolicy")}
    for spec in policies.values():
        selector = spec["podSelector"].get("matchLabels", {})
        assert any(_matches(selector, t["metadata"]["labels"]) for _, t in _templates(objects))

    public, admin = _receiver_ports(objects)
    receiver = policies["calendly-brevo-receiver-ingress"]
    open_rules = [r for r in receiver["ingress"] if "from" not in r]
    assert [r["ports"] for r in open_rules] == [[{"port": public, "protocol": "TCP"}]], (
        "webhooks come from anywhere, on the public port only"
    )
    (admin_rule,) = [r for r in receiver["ingress"] if "from" in r]
    assert admin_rule["ports"] == [{"port": admin, "protocol": "TCP"}]
    assert admin_rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
        {"podSelector": {}},  # this namespace only: a podSelector alone never crosses namespaces
    ]

    (worker_rule,) = policies["calendly-brevo-worker-ingress"]["ingress"]
    assert worker_rule["ports"] == [{"port": 9191, "protocol": "TCP"}]
    assert worker_rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert policies["calendly-brevo-jobs-ingress"]["ingress"] == []

    egress = policies["calendly-brevo-egress"]
    assert egress["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "calendly-brevo"}}
    ports = {(p["port"], p["protocol"]) for r in egress["egress"] for p in r["ports"]}
    assert ports == {(53, "UDP"), (53, "TCP"), (6379, "TCP"), (5432, "TCP"), (443, "TCP")}


def test_every_pod_is_covered_by_an_ingress_policy(objects: list[dict[str, Any]]) -> None:
    def selects(spec: dict[str, Any], labels: dict[str, str]) -> bool:
        selector = spec["podSelector"]
        if not _matches(selector.get("matchLabels", {}), labels):
            return False
        return all(
            labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", [])
        )

    policies = [p["spec"] for p in _find(objects, "NetworkPolicy")]
    for where, template in _templates(objects):
        labels = template["metadata"]["labels"]
        assert any("Ingress" in p["policyTypes"] and selects(p, labels) for p in policies), where


def test_pod_scrape_annotations_point_at_the_port_that_serves_metrics(
    objects: list[dict[str, Any]],
) -> None:
    public, admin = _receiver_ports(objects)
    expected = {"calendly-brevo-receiver": admin, "calendly-brevo-worker": 9191}
    for name, port in expected.items():
        template = _one(objects, "Deployment", name)["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        assert int(annotations["prometheus.io/port"]) == port != public


# --- autoscaling and monitoring -------------------------------------------------------------------
def test_keda_scales_the_worker_on_the_dramatiq_queue_list(rendered: dict[str, Any]) -> None:
    objs = rendered["production"]
    scaled = _one(objs, "ScaledObject", "calendly-brevo-worker")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "calendly-brevo-worker"
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == queueing.queue_key() == "dramatiq:calendly"
    auth = _one(objs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    example = yaml.safe_load((BASE / "secret.example.yaml").read_text())
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["name"] == example["metadata"]["name"] == SECRET_NAME
        assert ref["key"] in example["stringData"]


def test_the_hpa_alternative_scales_the_worker_on_ready_queue_depth(
    rendered: dict[str, Any],
) -> None:
    objs = rendered["hpa"]
    assert not _find(objs, "ScaledObject")
    hpa = _one(objs, "HorizontalPodAutoscaler", "calendly-brevo-worker")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "calendly-brevo-worker"
    (metric,) = hpa["metrics"]
    assert metric["external"]["metric"]["name"] == "calendly_brevo_queue_depth"
    selector = metric["external"]["metric"]["selector"]["matchLabels"]
    assert selector == {"queue": queueing.QUEUE_NAME, "kind": "ready"}


def test_an_autoscaled_worker_leaves_replicas_to_the_autoscaler(
    objects: list[dict[str, Any]],
) -> None:
    worker = _one(objects, "Deployment", "calendly-brevo-worker")
    assert "replicas" not in worker["spec"]


def test_service_monitors_scrape_the_receiver_and_worker_services(
    rendered: dict[str, Any],
) -> None:
    objs = rendered["production"]
    services = _find(objs, "Service")
    scraped = set()
    for monitor in _find(objs, "ServiceMonitor"):
        spec = monitor["spec"]
        (service,) = [
            s
            for s in services
            if _matches(spec["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        ports = {p["name"] for p in service["spec"]["ports"]}
        for endpoint in spec["endpoints"]:
            assert endpoint["port"] in ports
            assert endpoint["path"] == "/metrics"
        scraped.add(service["metadata"]["name"])
    (receiver_monitor,) = _find(objs, "ServiceMonitor", "calendly-brevo-receiver")
    (endpoint,) = receiver_monitor["spec"]["endpoints"]
    admin_port = _receiver_ports(objs)[1]
    assert _service_target(objs, "calendly-brevo-receiver", endpoint["port"]) == admin_port
    # The job label is the Service name; alerts.yml and the dashboard rely on these two.
    assert scraped == {"calendly-brevo-receiver", "calendly-brevo-worker"}


# --- small schemas for the CRDs kubernetes-validate does not know ---------------------------------
_META = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}


def _crd(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _META,
            "spec": spec,
        },
        "additionalProperties": False,
    }


_SCALED_OBJECT = {
    "type": "object",
    "required": ["scaleTargetRef", "triggers"],
    "properties": {
        "scaleTargetRef": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "name": {"type": "string"},
            },
            "additionalProperties": False,
        },
        "minReplicaCount": {"type": "integer", "minimum": 0},
        "maxReplicaCount": {"type": "integer", "minimum": 1},
        "pollingInterval": {"type": "integer", "minimum": 1},
        "cooldownPeriod": {"type": "integer", "minimum": 0},
        "advanced": {"type": "object"},
        "triggers": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["type", "metadata"],
                "properties": {
                    "type": {"type": "string"},
                    "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                    "authenticationRef": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}},
                    },
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}
_TRIGGER_AUTHENTICATION = {
    "type": "object",
    "properties": {
        "secretTargetRef": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["parameter", "name", "key"],
                "properties": {
                    "parameter": {"type": "string"},
                    "name": {"type": "string"},
                    "key": {"type": "string"},
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}
_SERVICE_MONITOR = {
    "type": "object",
    "required": ["selector", "endpoints"],
    "properties": {
        "selector": {
            "type": "object",
            "properties": {"matchLabels": {"type": "object"}},
            "additionalProperties": False,
        },
        "namespaceSelector": {"type": "object"},
        "jobLabel": {"type": "string"},
        "endpoints": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["port"],
                "properties": {
                    "port": {"type": "string"},
                    "path": {"type": "string"},
                    "interval": {"type": "string", "pattern": r"^\d+[smh]$"},
                    "scrapeTimeout": {"type": "string", "pattern": r"^\d+[smh]$"},
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}
_PROMETHEUS_RULE = {
    "type": "object",
    "required": ["groups"],
    "properties": {"groups": {"type": "array", "minItems": 1}},
    "additionalProperties": False,
}
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): _crd("keda.sh/v1alpha1", "ScaledObject", _SCALED_OBJECT),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): _crd(
        "keda.sh/v1alpha1", "TriggerAuthentication", _TRIGGER_AUTHENTICATION
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _crd(
        "monitoring.coreos.com/v1", "ServiceMonitor", _SERVICE_MONITOR
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _crd(
        "monitoring.coreos.com/v1", "PrometheusRule", _PROMETHEUS_RULE
    ),
}
