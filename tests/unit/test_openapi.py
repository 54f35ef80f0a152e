"""The committed openapi.yaml is exactly what the app generates (regenerate with `make openapi`)."""

from __future__ import annotations

from pathlib import Path

import yaml

from app.openapi import openapi_yaml

COMMITTED = Path(__file__).resolve().parents[2] / "openapi.yaml"


def test_committed_openapi_matches_the_app() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == openapi_yaml(), "run `make openapi` and commit openapi.yaml"


def test_every_videos_operation_is_documented() -> None:
    paths = yaml.safe_load(COMMITTED.read_text(encoding="utf-8"))["paths"]
    assert set(paths["/v1/videos"]) == {"get", "post"}
    assert set(paths["/v1/videos/{video_id}"]) == {"get", "delete"}
    assert "get" in paths["/v1/videos/{video_id}/content"]
    assert "post" in paths["/v1/videos/{video_id}/remix"]
    create_body = paths["/v1/videos"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(create_body)
