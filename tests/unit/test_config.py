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


class TestUpstreamKinds:
    def test_an_unknown_kind_refuses_to_start_naming_the_profile(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("VG_MODE", "dev")
        monkeypatch.setenv("VG_UPSTREAMS", '{"veo": {"kind": "sora", "base_url": "https://x.example"}}')
        with pytest.raises(ValidationError) as caught:
            load_settings()
        assert "upstreams.veo.kind" in str(caught.value)
        assert "'gemini'" in str(caught.value)

    def test_a_profile_without_its_key_refuses_to_start_outside_dev(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("VG_UPSTREAM__API_KEY", "sk-main")
        monkeypatch.setenv("VG_UPSTREAMS", '{"veo": {"kind": "gemini", "base_url": "https://g.example"}}')
        with pytest.raises(ValidationError, match=r"'veo' \(gemini\) has no api_key.*VG_UPSTREAMS__VEO__API_KEY"):
            load_settings()

    def test_a_profile_key_can_come_from_its_own_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        key_file = tmp_path / "gemini-key"
        key_file.write_text("goog-from-file\n")
        monkeypatch.setenv("VG_UPSTREAM__API_KEY", "sk-main")
        monkeypatch.setenv("VG_UPSTREAMS", '{"veo": {"kind": "gemini", "base_url": "https://g.example"}}')
        monkeypatch.setenv("VG_UPSTREAMS__VEO__API_KEY_FILE", str(key_file))
        settings = load_settings()
        assert settings.upstreams["veo"].kind == "gemini"
        assert settings.upstreams["veo"].api_key.get_secret_value() == "goog-from-file"
        assert settings.upstream_profile("veo") is settings.upstreams["veo"]
        assert settings.upstream_profile("default") is settings.upstream
