"""The metric helpers and the route label: templates and status classes, never raw paths."""

from __future__ import annotations

import socket

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from app.core import metrics
from app.core.access_log import route_template


@pytest.mark.parametrize(("status", "label"), [(200, "2xx"), (204, "2xx"), (404, "4xx"), (503, "5xx"), (42, "other")])
def test_status_class(status: int, label: str) -> None:
    assert metrics.status_class(status) == label


def routes_app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/videos/{video_id}/content")
    async def content(video_id: str) -> None: ...

    return app


def scope(path: str, method: str = "GET") -> dict[str, object]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}


def test_a_request_the_router_never_saw_is_labelled_by_the_template_it_matches() -> None:
    assert route_template(scope("/v1/videos/video_abc123/content"), routes_app().router.routes) == (
        "/v1/videos/{video_id}/content"
    )


def test_an_unknown_path_shares_one_label() -> None:
    assert route_template(scope("/wp-admin/setup.php"), routes_app().router.routes) == metrics.UNMATCHED_ROUTE


def test_queue_depth_sets_absent_states_to_zero() -> None:
    metrics.queue_depth({"queued": 3, "running": 1}, known=("queued", "running", "dead"))
    metrics.queue_depth({"queued": 2}, known=("queued", "running", "dead"))
    assert REGISTRY.get_sample_value("vg_archive_jobs", {"state": "queued"}) == 2
    assert REGISTRY.get_sample_value("vg_archive_jobs", {"state": "running"}) == 0
    assert REGISTRY.get_sample_value("vg_archive_jobs", {"state": "dead"}) == 0


def test_the_worker_metrics_server_is_off_at_port_zero_and_tolerates_a_taken_port() -> None:
    assert metrics.serve(0) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        # Another worker on this host holds the port: this one runs on without metrics.
        assert metrics.serve(taken.getsockname()[1], host="127.0.0.1") is None


def test_the_worker_metrics_server_serves_the_exposition() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stop = metrics.serve(port, host="127.0.0.1")
    assert stop is not None
    try:
        metrics.archived(variant="thumbnail", bytes_written=10, deadline_slack_seconds=None)
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'vg_archive_bytes_total{variant="thumbnail"}' in body
    finally:
        stop()


def test_every_metric_is_documented_in_the_readme_with_its_labels() -> None:
    """The README's metrics table is what operators build dashboards from: a new metric or label must be in it."""
    from pathlib import Path

    from app.core import metrics as gateway_metrics

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    rows = {line.split("`")[1]: line for line in readme.splitlines() if line.startswith("| `")}
    collectors = [
        value
        for value in vars(gateway_metrics).values()
        if hasattr(value, "_name") and getattr(value, "_name", "").startswith(f"{gateway_metrics.NAMESPACE}_")
    ]
    assert len(collectors) >= 8
    for collector in collectors:
        documented = collector._name.removeprefix(f"{gateway_metrics.NAMESPACE}_")
        if collector._type == "counter":  # exposed (and documented) with the _total suffix
            documented += "_total"
        assert documented in rows, f"{collector._name} is not in the README's metrics table"
        for label in collector._labelnames:
            assert f"`{label}`" in rows[documented], f"label {label} of {collector._name} is not documented"
