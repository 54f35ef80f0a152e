"""The Helm chart rendered through Helm's own Go SDK (helm-python-sdk), for the chart's and the docs' tests.

`helm-python-sdk` binds libhelm_c (shipped in the wheel): the same template engine, values coalescing and
values.schema.json validation as `helm template` / `helm install`, and `helm lint --strict`, with no helm binary.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "video-gateway"
KUBE_VERSION = "1.30.0"
RELEASE = "vg"
NAMESPACE = "video"
FULLNAME = f"{RELEASE}-video-gateway"
SECRET_ENV = {
    "VG_DB__URL_FILE",
    "VG_UPSTREAM__API_KEY_FILE",
    "VG_WEBHOOKS__SECRETS_FILE",
    "VG_S3__ACCESS_KEY_ID_FILE",
    "VG_S3__SECRET_ACCESS_KEY_FILE",
    "VG_ADMIN_API_KEY_FILE",
}
# CRDs kubernetes-validate has no schema for; their shape is asserted by the tests instead.
CRD_API_GROUPS = {"monitoring.coreos.com"}

Manifest = dict[str, Any]


def render(values: dict[str, Any] | None = None, *, release: str = RELEASE) -> list[Manifest]:
    """`helm template` of the chart: every manifest (hooks included), parsed."""
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name=release, namespace=NAMESPACE, is_install=True)
    manifests: list[Manifest] = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".txt"):  # NOTES.txt
            continue
        manifests.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return manifests


def by_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for manifest in manifests:
        if manifest["kind"] in {"Deployment", "Job"}:
            yield manifest["metadata"]["name"], manifest["spec"]["template"]["spec"]


def env_of(container: Manifest) -> dict[str, str]:
    names = [item["name"] for item in container["env"]]
    assert len(names) == len(set(names)), f"duplicate env vars in {container['name']}"
    return {item["name"]: item["value"] for item in container["env"]}


def lint(values: dict[str, Any] | None = None) -> dict[str, Any]:
    return helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")


def assert_clean_lint(values: dict[str, Any] | None = None) -> None:
    report = lint(values)
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error; 1 is info
    assert not problems and not report["errors"], report


def assert_valid_for_kubernetes(manifests: list[Manifest]) -> None:
    for manifest in manifests:
        if manifest["apiVersion"].split("/")[0] in CRD_API_GROUPS:
            continue  # no upstream schema: asserted by the test that enables it
        try:
            kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{manifest['kind']}/{manifest['metadata']['name']}: {error.message} at {list(error.path)}")
