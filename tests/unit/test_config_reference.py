"""docs/configuration.md is exactly what the settings object generates (`video-gateway config-reference`)."""

from __future__ import annotations

from pathlib import Path

from app.ops.config_reference import config_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_configuration_reference_matches_the_settings() -> None:
    assert DOC.read_text(encoding="utf-8") == config_reference(), (
        "run `video-gateway config-reference > docs/configuration.md`"
    )


def test_every_group_and_secret_is_listed() -> None:
    text = config_reference()
    for variable in (
        "VG_DB__URL",
        "VG_UPSTREAM__API_KEY",
        "VG_WEBHOOKS__SECRETS",
        "VG_S3__SECRET_ACCESS_KEY",
        "VG_WORKER__LEASE_SECONDS",
        "VG_LIMITS__BUDGET_USD_PER_PERIOD",
        "VG_UPSTREAMS",
    ):
        assert f"`{variable}`" in text
    assert "vg-dev-secret" not in text and "sim-key" not in text  # secret defaults are not printed
