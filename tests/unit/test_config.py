"""Settings: env prefix and nesting, secrets from `_FILE`, placeholders refused in production."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.core.config import Mode, load_settings


class TestSettings:
    def test_nested_groups_come_from_prefixed_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("VG_MODE", "dev")
        monkeypatch.setenv("VG_UPSTREAM__BASE_URL", "https://videos.example/v1")
        monkeypatch.setenv("VG_API__PORT", "9001")
        settings = load_settings()
        assert settings.mode is Mode.DEV
        assert settings.upstream.base_url == "https://videos.example/v1"
        assert settings.api.port == 9001

    def test_a_secret_can_come_from_a_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        secret_file = tmp_path / "upstream-key"
        secret_file.write_text("sk-from-file\n")
        monkeypatch.setenv("VG_UPSTREAM__API_KEY_FILE", str(secret_file))
        settings = load_settings()
        assert settings.upstream.api_key.get_secret_value() == "sk-from-file"

    def test_secrets_never_show_in_repr_or_dump(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("VG_UPSTREAM__API_KEY", "sk-very-secret")
        settings = load_settings()
        assert "sk-very-secret" not in repr(settings)
        assert "sk-very-secret" not in settings.model_dump_json()

    def test_production_refuses_the_placeholder_upstream_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("VG_UPSTREAM__API_KEY", raising=False)
        monkeypatch.setenv("VG_MODE", "production")
        with pytest.raises(ValidationError, match="VG_UPSTREAM__API_KEY"):
            load_settings()
