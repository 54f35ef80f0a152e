"""The Helm chart (helm/video-gateway), rendered and linted by a real Helm, without a cluster or a helm binary.

`helm-python-sdk` binds Helm's own Go SDK (libhelm_c, shipped in the wheel): the same template engine, values
coalescing and values.schema.json validation as `helm template` / `helm install`, and `helm lint --strict`.
Every rendered manifest is validated against Kubernetes' OpenAPI schemas (`kubernetes-validate`, strict: unknown
fields are errors). The ServiceMonitor is a prometheus-operator CRD those schemas cannot know: its shape is
asserted here instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from app.core.config import Settings, load_settings
from tests.support.helm_chart import (
    FULLNAME,
    NAMESPACE,
    SECRET_ENV,
    Manifest,
    assert_clean_lint,
    assert_valid_for_kubernetes,
    by_kind,
    env_of,
    lint,
    pod_specs,
    render,
)

FULL: dict[str, Any] = {
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "hosts": ["videos.example.com"],
        "tls": [{"secretName": "videos-tls", "hosts": ["videos.example.com"]}],
        "api": {"enabled": True, "paths": ["/v1"]},
    },
    "api": {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 8}},
    "worker": {
        "shutdownGraceSeconds": 120,
        "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 6, "targetMemoryUtilizationPercentage": 80},
        "podDisruptionBudget": {"enabled": True, "minAvailable": "50%"},
    },
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
}

PROFILES: dict[str, Any] = {
    "ingress": {"enabled": True},
    "env": {"VG_WEBHOOKS__PATH": "/webhooks/main", "VG_API__MAX_REQUEST_BYTES": 67108864},
    "upstreams": {
        "pro": {
            "settings": {"base_url": "https://pro.example.com/v1", "models": ["sora-2-pro"]},
            "apiKey": {"key": "pro-api-key"},
            "webhookSecrets": {"secret": "pro-provider", "key": "webhook-secrets"},
        },
        "quiet": {
            "settings": {"base_url": "https://quiet.example.com/v1", "models": ["quiet-1"], "sends_webhooks": False},
            "apiKey": {"key": "quiet-api-key"},
        },
    },
}


def assert_hardened(manifests: list[Manifest]) -> None:
    """Non-root 10001, read-only root, no capabilities, no escalation, RuntimeDefault seccomp, /tmp writable."""
    specs = dict(pod_specs(manifests))
    assert set(specs) == {f"{FULLNAME}-api", f"{FULLNAME}-worker", f"{FULLNAME}-migrate"}
    for name, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == 10001, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        assert "emptyDir" in volumes["tmp"], name
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert context["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert context["privileged"] is False, (name, container["name"])
            assert context["capabilities"] == {"drop": ["ALL"]}, (name, container["name"])
            assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
            assert mounts["tmp"]["mountPath"] == "/tmp"
            assert mounts["tmp"].get("readOnly", False) is False
            assert set(container["resources"]) >= {"requests", "limits"}, (name, container["name"])


def assert_secrets_are_read_only_files(manifests: list[Manifest], expected_env: set[str]) -> None:
    """Every *_FILE variable points at a file of the read-only mount, projected from an existing Secret."""
    for name, spec in pod_specs(manifests):
        volume = next(v for v in spec["volumes"] if v["name"] == "secrets")
        projected = {
            item["path"]: source["secret"]["name"]
            for source in volume["projected"]["sources"]
            for item in source["secret"]["items"]
        }
        (container,) = spec["containers"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "secrets"]
        assert mount["readOnly"] is True, name
        files = {key: value for key, value in env_of(container).items() if key.endswith("_FILE")}
        assert set(files) == expected_env, name
        for variable, path in files.items():
            assert path.startswith(mount["mountPath"] + "/"), (name, variable)
            assert path.removeprefix(mount["mountPath"] + "/") in projected, (name, variable)
        # The chart never holds a secret itself: no Secret objects, no secret values in env.
        assert not any(key.endswith(("__URL", "API_KEY", "__SECRETS")) for key in env_of(container)), name
    assert not by_kind(manifests, "Secret")


def assert_pdbs_select_their_pods(manifests: list[Manifest]) -> None:
    pdbs = by_kind(manifests, "PodDisruptionBudget")
    deployments = by_kind(manifests, "Deployment")
    assert set(pdbs) == set(deployments) == {f"{FULLNAME}-api", f"{FULLNAME}-worker"}
    for name, pdb in pdbs.items():
        pod_labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items(), name
        assert deployments[name]["spec"]["selector"]["matchLabels"] == selector, name
        # The API's and the workers' selectors must not overlap.
        other = deployments[next(n for n in deployments if n != name)]
        assert not selector.items() <= other["spec"]["template"]["metadata"]["labels"].items()


def worker_grace(manifests: list[Manifest]) -> tuple[int, float]:
    spec = by_kind(manifests, "Deployment")[f"{FULLNAME}-worker"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return spec["terminationGracePeriodSeconds"], float(env_of(container)["VG_WORKER__SHUTDOWN_GRACE_SECONDS"])


def load_pod_settings(
    manifests: list[Manifest], component: str, root: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Lay out the pod's secret volume under `root` (each file holding "secret:<Secret>/<key>"), give the
    process exactly the container's VG_* environment with paths moved under `root`, and load the Settings."""
    spec = by_kind(manifests, "Deployment")[f"{FULLNAME}-{component}"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "secrets"]
    volume = next(v for v in spec["volumes"] if v["name"] == "secrets")
    for source in volume["projected"]["sources"]:
        for item in source["secret"]["items"]:
            file = root / item["path"]
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(f"secret:{source['secret']['name']}/{item['key']}\n", encoding="utf-8")
    for name in [name for name in os.environ if name.startswith("VG_")]:
        monkeypatch.delenv(name)
    for name, value in env_of(container).items():
        if name.endswith("_FILE"):
            value = str(root / value.removeprefix(mount["mountPath"] + "/"))
        monkeypatch.setenv(name, value)
    return load_settings()


# The whole module takes ~3 s: Helm runs in-process and kubernetes-validate reads its schemas from the wheel.


@pytest.fixture(scope="module")
def default_manifests() -> list[Manifest]:
    return render()


class TestDefaults:
    @pytest.fixture
    def manifests(self, default_manifests: list[Manifest]) -> list[Manifest]:
        return default_manifests

    def test_strict_lint_passes(self) -> None:
        assert_clean_lint()

    def test_every_manifest_is_valid_kubernetes(self, manifests: list[Manifest]) -> None:
        assert_valid_for_kubernetes(manifests)

    def test_resources(self, manifests: list[Manifest]) -> None:
        kinds = sorted((m["kind"], m["metadata"]["name"]) for m in manifests)
        assert kinds == [
            ("Deployment", f"{FULLNAME}-api"),
            ("Deployment", f"{FULLNAME}-worker"),
            ("Job", f"{FULLNAME}-migrate"),
            ("PodDisruptionBudget", f"{FULLNAME}-api"),
            ("PodDisruptionBudget", f"{FULLNAME}-worker"),
            ("Service", f"{FULLNAME}-api"),
        ]  # no Ingress, HPA or ServiceMonitor unless asked for

    def test_migration_is_a_pre_install_and_pre_upgrade_hook(self, manifests: list[Manifest]) -> None:
        job = by_kind(manifests, "Job")[f"{FULLNAME}-migrate"]
        annotations = job["metadata"]["annotations"]
        assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"].split(",")
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["migrate"]
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"

    def test_hardened_pods(self, manifests: list[Manifest]) -> None:
        assert_hardened(manifests)

    def test_secrets_mounted_read_only_from_the_existing_secret(self, manifests: list[Manifest]) -> None:
        assert_secrets_are_read_only_files(manifests, SECRET_ENV)
        for _, spec in pod_specs(manifests):
            sources = next(v for v in spec["volumes"] if v["name"] == "secrets")["projected"]["sources"]
            assert {source["secret"]["name"] for source in sources} == {"video-gateway"}

    def test_pdbs(self, manifests: list[Manifest]) -> None:
        assert_pdbs_select_their_pods(manifests)

    def test_api_probes_and_service(self, manifests: list[Manifest]) -> None:
        deployment = by_kind(manifests, "Deployment")[f"{FULLNAME}-api"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["args"] == ["serve"]
        env = env_of(container)
        assert env["VG_API__HOST"] == "0.0.0.0"
        assert {"name": "http", "containerPort": int(env["VG_API__PORT"]), "protocol": "TCP"} in container["ports"]
        service = by_kind(manifests, "Service")[f"{FULLNAME}-api"]
        assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert service["spec"]["ports"][0]["targetPort"] == "http"
        assert deployment["spec"]["replicas"] == 2

    def test_worker_outlives_its_shutdown_grace(self, manifests: list[Manifest]) -> None:
        termination, shutdown = worker_grace(manifests)
        assert termination > shutdown

    def test_env_comes_from_values_env(self, manifests: list[Manifest]) -> None:
        (container,) = by_kind(manifests, "Deployment")[f"{FULLNAME}-worker"]["spec"]["template"]["spec"]["containers"]
        env = env_of(container)
        assert env["VG_MODE"] == "production"
        assert env["VG_UPSTREAM__BASE_URL"] == "https://videos.example.com/v1"

    def test_the_app_reads_its_settings_from_what_the_chart_mounts(
        self, manifests: list[Manifest], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The chart's env and file layout, replayed on disk, load into the app's Settings."""
        settings = load_pod_settings(manifests, "api", tmp_path, monkeypatch)
        assert settings.db.url.get_secret_value() == "secret:video-gateway/db-url"
        assert settings.upstream.api_key.get_secret_value() == "secret:video-gateway/upstream-api-key"
        assert settings.webhooks.secrets is not None
        assert settings.webhooks.secrets.get_secret_value() == "secret:video-gateway/webhook-secrets"
        assert settings.s3.secret_access_key.get_secret_value() == "secret:video-gateway/s3-secret-access-key"
        assert settings.admin_api_key is not None
        assert settings.api.host == "0.0.0.0"
        assert settings.mode.value == "production"


@pytest.fixture(scope="module")
def full_manifests() -> list[Manifest]:
    return render(FULL)


class TestIngressHpaServiceMonitor:
    @pytest.fixture
    def manifests(self, full_manifests: list[Manifest]) -> list[Manifest]:
        return full_manifests

    def test_strict_lint_passes(self) -> None:
        assert_clean_lint(FULL)

    def test_every_manifest_is_valid_kubernetes(self, manifests: list[Manifest]) -> None:
        assert_valid_for_kubernetes(manifests)

    def test_hardened_and_secrets(self, manifests: list[Manifest]) -> None:
        assert_hardened(manifests)
        assert_secrets_are_read_only_files(manifests, SECRET_ENV)

    def test_ingress_exposes_the_webhook_and_the_api(self, manifests: list[Manifest]) -> None:
        (ingress,) = by_kind(manifests, "Ingress").values()
        assert ingress["spec"]["ingressClassName"] == "nginx"
        assert ingress["spec"]["tls"] == [{"secretName": "videos-tls", "hosts": ["videos.example.com"]}]
        (rule,) = ingress["spec"]["rules"]
        assert rule["host"] == "videos.example.com"
        paths = {(p["path"], p["pathType"]) for p in rule["http"]["paths"]}
        assert paths == {("/webhooks/openai", "Exact"), ("/v1", "Prefix")}
        service = by_kind(manifests, "Service")[f"{FULLNAME}-api"]
        port_names = {port["name"] for port in service["spec"]["ports"]}
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"]["name"] in port_names

    def test_hpas_target_the_deployments(self, manifests: list[Manifest]) -> None:
        hpas = by_kind(manifests, "HorizontalPodAutoscaler")
        deployments = by_kind(manifests, "Deployment")
        assert set(hpas) == set(deployments)
        for name, hpa in hpas.items():
            target = hpa["spec"]["scaleTargetRef"]
            assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", name)
            # The HPA owns the replica count: a Deployment that set it would fight it on every upgrade.
            assert "replicas" not in deployments[name]["spec"]
        assert (hpas[f"{FULLNAME}-api"]["spec"]["minReplicas"], hpas[f"{FULLNAME}-api"]["spec"]["maxReplicas"]) == (
            2,
            8,
        )
        worker_metrics = {m["resource"]["name"]: m for m in hpas[f"{FULLNAME}-worker"]["spec"]["metrics"]}
        assert worker_metrics["memory"]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 80}
        assert worker_metrics["cpu"]["resource"]["target"]["averageUtilization"] == 70

    def test_pdbs(self, manifests: list[Manifest]) -> None:
        assert_pdbs_select_their_pods(manifests)
        pdb = by_kind(manifests, "PodDisruptionBudget")[f"{FULLNAME}-worker"]
        assert pdb["spec"] == {**pdb["spec"], "minAvailable": "50%"} and "maxUnavailable" not in pdb["spec"]

    def test_worker_grace_follows_the_shutdown_grace(self, manifests: list[Manifest]) -> None:
        termination, shutdown = worker_grace(manifests)
        assert shutdown == 120
        assert termination > shutdown

    def test_service_monitors_scrape_the_api_and_the_workers(self, manifests: list[Manifest]) -> None:
        """The CRD's shape (monitoring.coreos.com/v1), asserted here: kubernetes-validate has no schema for it."""
        monitors = by_kind(manifests, "ServiceMonitor")
        services = by_kind(manifests, "Service")
        deployments = by_kind(manifests, "Deployment")
        assert set(monitors) == {f"{FULLNAME}-api", f"{FULLNAME}-worker"}
        targets = {"api": (f"{FULLNAME}-api", "http"), "worker": (f"{FULLNAME}-worker-metrics", "metrics")}
        for component, (service_name, port) in targets.items():
            monitor = monitors[f"{FULLNAME}-{component}"]
            assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
            assert monitor["metadata"]["labels"]["release"] == "prometheus"
            assert set(monitor["spec"]) == {"namespaceSelector", "selector", "endpoints"}
            assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
            selector = monitor["spec"]["selector"]["matchLabels"].items()
            # It selects its own component's Service and no other.
            assert [name for name, svc in services.items() if selector <= svc["metadata"]["labels"].items()] == [
                service_name
            ]
            (endpoint,) = monitor["spec"]["endpoints"]
            assert endpoint == {"port": port, "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
            service = services[service_name]
            (service_port,) = [p for p in service["spec"]["ports"] if p["name"] == port]
            # The Service's port leads to a named container port of that component's pods.
            (container,) = deployments[f"{FULLNAME}-{component}"]["spec"]["template"]["spec"]["containers"]
            container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert service_port["targetPort"] in container_ports
            assert service["spec"]["selector"].items() <= (
                deployments[f"{FULLNAME}-{component}"]["spec"]["template"]["metadata"]["labels"].items()
            )
        (worker,) = deployments[f"{FULLNAME}-worker"]["spec"]["template"]["spec"]["containers"]
        assert env_of(worker)["VG_WORKER__METRICS_PORT"] == str(
            services[f"{FULLNAME}-worker-metrics"]["spec"]["ports"][0]["port"]
        )
        assert services[f"{FULLNAME}-worker-metrics"]["spec"]["clusterIP"] == "None"


@pytest.fixture(scope="module")
def profile_manifests() -> list[Manifest]:
    return render(PROFILES)


class TestExtraUpstreamProfile:
    @pytest.fixture
    def manifests(self, profile_manifests: list[Manifest]) -> list[Manifest]:
        return profile_manifests

    def test_strict_lint_passes(self) -> None:
        assert_clean_lint(PROFILES)

    def test_every_manifest_is_valid_kubernetes(self, manifests: list[Manifest]) -> None:
        assert_valid_for_kubernetes(manifests)

    def test_ingress_exposes_each_webhook_receiver_and_not_the_api(self, manifests: list[Manifest]) -> None:
        (ingress,) = by_kind(manifests, "Ingress").values()
        (rule,) = ingress["spec"]["rules"]
        assert "host" not in rule
        paths = {(p["path"], p["pathType"]) for p in rule["http"]["paths"]}
        # The default receiver at its configured path, `pro` at /webhooks/pro; `quiet` sends no webhooks.
        assert paths == {("/webhooks/main", "Exact"), ("/webhooks/pro", "Exact")}

    def test_profile_secrets_are_mounted_files(self, manifests: list[Manifest]) -> None:
        profile_env = {
            "VG_UPSTREAMS__PRO__API_KEY_FILE",
            "VG_UPSTREAMS__PRO__WEBHOOK_SECRETS_FILE",
            "VG_UPSTREAMS__QUIET__API_KEY_FILE",
        }
        assert_secrets_are_read_only_files(manifests, SECRET_ENV | profile_env)
        assert_hardened(manifests)

    def test_the_app_loads_the_profiles(
        self, manifests: list[Manifest], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        settings = load_pod_settings(manifests, "worker", tmp_path, monkeypatch)
        assert set(settings.upstreams) == {"pro", "quiet"}
        pro, quiet = settings.upstreams["pro"], settings.upstreams["quiet"]
        assert pro.base_url == "https://pro.example.com/v1" and pro.models == ["sora-2-pro"]
        assert pro.api_key.get_secret_value() == "secret:video-gateway/pro-api-key"
        assert pro.webhook_secret_list() == ["secret:pro-provider/webhook-secrets"]
        assert quiet.sends_webhooks is False and quiet.webhook_secrets is None
        assert settings.webhooks.path == "/webhooks/main"
        # A number in values.env reaches the app as the integer, not as Helm's float ("6.7108864e+07").
        assert settings.api.max_request_bytes == 67108864


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("replicas below one", {"api": {"replicas": 0}}, "replicas"),
    ("replicas of the wrong type", {"worker": {"replicas": "2"}}, "replicas"),
    ("no image repository", {"image": {"repository": None}}, "repository"),
    ("an empty image repository", {"image": {"repository": ""}}, "repository"),
    ("a bad pull policy", {"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ("a port out of range", {"api": {"port": 70000}}, "port"),
    ("a secret put in plain env", {"env": {"VG_UPSTREAM__API_KEY": "sk-live"}}, "VG_UPSTREAM__API_KEY"),
    ("a variable the chart sets", {"env": {"VG_WORKER__SHUTDOWN_GRACE_SECONDS": "5"}}, "VG_WORKER__SHUTDOWN"),
    ("a worker metrics port out of range", {"worker": {"metricsPort": -1}}, "metricsPort"),
    ("a non-VG env name", {"env": {"PATH": "/bin"}}, "PATH"),
    ("no grace margin for the workers", {"worker": {"terminationGraceMarginSeconds": 0}}, "terminationGrace"),
    ("a fractional shutdown grace", {"worker": {"shutdownGraceSeconds": 2.5}}, "shutdownGraceSeconds"),
    ("no database secret", {"secrets": {"dbUrl": None}}, "dbUrl"),
    ("an empty secret key", {"secrets": {"upstreamApiKey": {"key": ""}}}, "key"),
    (
        "a profile secret without its key",
        {"upstreams": {"pro": {**PROFILES["upstreams"]["pro"], "apiKey": {"secret": "pro-provider"}}}},
        "key",
    ),
    ("an unknown top-level key (a typo)", {"ingres": {"enabled": True}}, "ingres"),
    (
        "both PDB bounds",
        {"api": {"podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": 1}}},
        "podDisruptionBudget",
    ),
    ("HPA minReplicas below one", {"worker": {"autoscaling": {"enabled": True, "minReplicas": 0}}}, "minReplicas"),
    ("a profile named default", {"upstreams": {"default": PROFILES["upstreams"]["pro"]}}, "default"),
    ("an upper-case profile name", {"upstreams": {"Pro": PROFILES["upstreams"]["pro"]}}, "Pro"),
    (
        "a profile secret in plain settings",
        {
            "upstreams": {
                "pro": {
                    **PROFILES["upstreams"]["pro"],
                    "settings": {"base_url": "https://p/v1", "models": ["m"], "api_key": "sk"},
                }
            }
        },
        "settings",
    ),
    (
        "a ServiceMonitor interval that is no duration",
        {"serviceMonitor": {"enabled": True, "interval": "often"}},
        "interval",
    ),
]

# Rules the schema cannot express; the templates `fail` with a message instead.
INVALID_COMBINATIONS: list[tuple[str, dict[str, Any], str]] = [
    (
        "HPA min above max",
        {"api": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}},
        "minReplicas",
    ),
    ("webhooks on without a secret", {"secrets": {"webhookSecrets": None}}, "webhookSecrets"),
    (
        "a webhook-sending profile without its secret",
        {"upstreams": {"pro": {"settings": {"base_url": "https://p/v1", "models": ["m"]}, "apiKey": {"key": "k"}}}},
        "webhookSecrets",
    ),
    (
        "an ingress with nothing to expose",
        {"ingress": {"enabled": True}, "env": {"VG_WEBHOOKS__ENABLED": False}, "secrets": {"webhookSecrets": None}},
        "nothing to expose",
    ),
]


@pytest.mark.parametrize(("values", "needle"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_the_schema_rejects_bad_values(values: dict[str, Any], needle: str) -> None:
    with pytest.raises(helm.HelmValuesError, match="schema") as caught:
        render(values)
    assert needle in str(caught.value)


def test_strict_lint_fails_on_bad_values() -> None:
    report = lint({"api": {"replicas": 0}})
    assert report["errors"] or any(m["severity"] == 3 for m in report["messages"]), report


@pytest.mark.parametrize(
    ("values", "needle"), [case[1:] for case in INVALID_COMBINATIONS], ids=[case[0] for case in INVALID_COMBINATIONS]
)
def test_the_templates_refuse_bad_combinations(values: dict[str, Any], needle: str) -> None:
    with pytest.raises(helm.HelmRenderError) as caught:
        render(values)
    assert needle in str(caught.value)


def test_webhooks_off_need_no_secret_and_expose_only_the_api() -> None:
    values = {
        "env": {"VG_WEBHOOKS__ENABLED": "false"},
        "secrets": {"webhookSecrets": None, "adminApiKey": None},
        "ingress": {"enabled": True, "api": {"enabled": True, "paths": ["/v1/videos"]}},
    }
    manifests = render(values)
    assert_valid_for_kubernetes(manifests)
    assert_secrets_are_read_only_files(manifests, SECRET_ENV - {"VG_WEBHOOKS__SECRETS_FILE", "VG_ADMIN_API_KEY_FILE"})
    (ingress,) = by_kind(manifests, "Ingress").values()
    assert [(p["path"], p["pathType"]) for p in ingress["spec"]["rules"][0]["http"]["paths"]] == [
        ("/v1/videos", "Prefix")
    ]


def test_upstreams_env_is_json_the_app_parses() -> None:
    manifests = render(PROFILES)
    (container,) = by_kind(manifests, "Deployment")[f"{FULLNAME}-api"]["spec"]["template"]["spec"]["containers"]
    profiles = json.loads(env_of(container)["VG_UPSTREAMS"])
    assert profiles["pro"] == {"base_url": "https://pro.example.com/v1", "models": ["sora-2-pro"]}
    assert "api_key" not in json.dumps(profiles)
