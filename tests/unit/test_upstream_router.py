"""Several upstreams: which profile renders which model, and settings that would route ambiguously."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.core.config import Mode, Settings, UpstreamProfile
from app.core.errors import InvalidRequest
from app.upstream.router import UnknownProfile, UpstreamRouter


def settings_with(**profiles: UpstreamProfile) -> Settings:
    return Settings(mode=Mode.DEV, upstreams=profiles)


class TestRouting:
    async def test_listed_models_go_to_their_profile_and_the_rest_to_the_default(self) -> None:
        router = UpstreamRouter(
            settings_with(pro=UpstreamProfile(base_url="https://pro.example/v1", models=["sora-2-pro"]))
        )
        assert router.profile_for_model("sora-2-pro") == "pro"
        assert router.profile_for_model("sora-2") == "default"
        assert router.profile_for_model("anything-else") == "default"
        assert router.profiles == ["default", "pro"]
        with pytest.raises(UnknownProfile):
            router.adapter("gone")
        await router.aclose()

    def test_a_model_routed_to_two_profiles_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="routed to both"):
            settings_with(
                a=UpstreamProfile(base_url="https://a.example/v1", models=["m"]),
                b=UpstreamProfile(base_url="https://b.example/v1", models=["m"]),
            )

    def test_a_profile_cannot_be_named_default(self) -> None:
        with pytest.raises(ValidationError, match="slug"):
            settings_with(default=UpstreamProfile(base_url="https://a.example/v1"))

    def test_profiles_come_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("VG_MODE", "dev")
        monkeypatch.setenv("VG_UPSTREAMS", '{"pro": {"base_url": "https://pro.example/v1", "models": ["sora-2-pro"]}}')
        settings = Settings()
        assert settings.upstreams["pro"].models == ["sora-2-pro"]


class TestKinds:
    async def test_each_profile_gets_the_adapter_of_its_kind(self) -> None:
        router = UpstreamRouter(
            settings_with(veo=UpstreamProfile(kind="gemini", base_url="https://g.example", models=["veo-3.1"]))
        )
        assert router.adapter_for_model("veo-3.1").kind == "gemini"
        assert router.adapter_for_model("veo-3.1").served_variants == frozenset({"video"})
        assert router.adapter_for_model("sora-2").kind == "openai"
        await router.aclose()

    def test_a_profile_that_sends_webhooks_without_a_secret_stops_the_app_naming_it(self) -> None:
        from app.main import create_app

        settings = settings_with(veo=UpstreamProfile(kind="gemini", base_url="https://g.example", models=["v"]))
        settings = settings.model_copy(update={"webhooks": settings.webhooks.model_copy(update={"enabled": False})})
        with pytest.raises(ValueError, match="upstream profile 'veo': no webhook secret"):
            create_app(settings)


class TestServedModels:
    async def test_the_default_profile_serves_openais_models_and_refuses_others_listing_what_is_served(
        self,
    ) -> None:
        router = UpstreamRouter(
            settings_with(veo=UpstreamProfile(kind="gemini", base_url="https://g.example", models=["veo-3.1"]))
        )
        assert router.served_models == ["sora-2", "sora-2-pro", "veo-3.1"]
        for model in ("sora-2", "sora-2-pro", "veo-3.1"):
            router.check_model(model)
        with pytest.raises(InvalidRequest) as refused:
            router.check_model("sora-3")
        assert refused.value.param == "model" and refused.value.code == "invalid_value"
        assert refused.value.message == (
            "Invalid value: 'sora-3'. Supported values are: 'sora-2', 'sora-2-pro', 'veo-3.1'."
        )
        await router.aclose()

    async def test_a_model_listed_by_the_default_and_a_named_profile_renders_in_the_named_one(self) -> None:
        router = UpstreamRouter(
            settings_with(pro=UpstreamProfile(base_url="https://pro.example/v1", models=["sora-2-pro"]))
        )
        assert router.profile_for_model("sora-2-pro") == "pro"
        assert router.served_models == ["sora-2", "sora-2-pro"]
        await router.aclose()

    async def test_a_star_passes_every_model_to_the_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("VG_MODE", "dev")
        monkeypatch.setenv("VG_UPSTREAM__MODELS", '["*"]')
        router = UpstreamRouter(Settings())
        router.check_model("anything-else")
        assert router.profile_for_model("anything-else") == "default"
        assert router.served_models == []
        await router.aclose()

    def test_a_star_in_a_named_profile_is_refused_at_start(self) -> None:
        with pytest.raises(ValidationError, match="only for the default profile"):
            settings_with(pro=UpstreamProfile(base_url="https://pro.example/v1", models=["*"]))
