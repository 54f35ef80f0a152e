"""Fallbacks across profiles, the parts that need no database: the setting and its checks at start, the order of
a model's candidates, which candidates can take a request, what moves a create on, each adapter's
`unavailable()`, and where the provider's model id (not the caller's) is used after the create."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import httpx
import pytest
from pydantic import ValidationError

from app.archive import admission
from app.archive.admission import BacklogFull
from app.core.config import FallbackTarget, LimitSettings, Mode, Settings, UpstreamProfile, UpstreamSettings
from app.core.errors import (
    GatewayError,
    InvalidRequest,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from app.limits.service import profile_usage
from app.main import create_app
from app.models import Video
from app.upstream.client import NO_RETRY_HEADERS, UpstreamClient
from app.upstream.router import UpstreamRouter
from app.upstream.schemas import CreateVideoCommand
from app.videos import fallbacks
from app.videos.repository import ProfileUsageRow

VEO = "veo-3.1-generate-preview"
FAL_VEO = "fal-ai/veo3.1"


def settings_with(fallbacks_setting: dict[str, list[FallbackTarget]] | None = None, **extra: object) -> Settings:
    return Settings(
        mode=Mode.DEV,
        upstreams={
            "veo": UpstreamProfile(kind="gemini", base_url="https://g.example", models=[VEO], sends_webhooks=False),
            "fal": UpstreamProfile(kind="fal", base_url="https://queue.fal.example", sends_webhooks=False),
        },
        fallbacks=fallbacks_setting or {},
        **extra,  # type: ignore[arg-type]
    )


def veo_then_fal() -> Settings:
    return settings_with({VEO: [FallbackTarget(profile="fal", model=FAL_VEO)]})


def command(*, model: str = VEO, seconds: str = "4", size: str = "1280x720") -> CreateVideoCommand:
    return CreateVideoCommand(prompt="a heron", model=model, seconds=seconds, size=size)


class TestTheSetting:
    def test_it_is_read_from_the_environment_as_json(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("VG_MODE", "dev")
        monkeypatch.setenv("VG_UPSTREAMS", '{"fal": {"kind": "fal", "base_url": "https://q.example"}}')
        monkeypatch.setenv("VG_FALLBACKS", f'{{"sora-2": [{{"profile": "fal", "model": "{FAL_VEO}"}}]}}')
        settings = Settings()
        assert settings.fallbacks == {"sora-2": [FallbackTarget(profile="fal", model=FAL_VEO)]}

    def test_an_unknown_profile_fails_when_the_settings_are_read_naming_the_entry(self) -> None:
        with pytest.raises(ValidationError) as refused:
            settings_with(
                {VEO: [FallbackTarget(profile="fal", model=FAL_VEO), FallbackTarget(profile="gone", model="m")]}
            )
        message = str(refused.value)
        assert f"VG_FALLBACKS['{VEO}'][1] names upstream profile 'gone', which is not configured" in message
        assert "default, fal, veo" in message

    def test_an_entry_takes_exactly_a_profile_and_a_model(self) -> None:
        with pytest.raises(ValidationError):
            FallbackTarget.model_validate({"profile": "fal", "model": FAL_VEO, "priority": 1})
        with pytest.raises(ValidationError):
            FallbackTarget.model_validate({"profile": "fal", "model": ""})

    def test_a_profile_renders_its_own_models_and_those_fallbacks_send_it(self) -> None:
        settings = veo_then_fal()
        assert settings.models_rendered_by("fal") == [FAL_VEO]
        assert settings.models_rendered_by("veo") == [VEO]
        assert settings.profile_kinds() == {"default": "openai", "veo": "gemini", "fal": "fal"}


class TestCheckedAtStart:
    async def test_candidates_are_the_models_own_profile_then_its_fallbacks_in_order(self) -> None:
        settings = settings_with(
            {VEO: [FallbackTarget(profile="fal", model=FAL_VEO), FallbackTarget(profile="default", model="sora-2")]}
        )
        router = UpstreamRouter(settings)
        assert [(c.profile, c.model, c.adapter.kind) for c in router.candidates(VEO)] == [
            ("veo", VEO, "gemini"),
            ("fal", FAL_VEO, "fal"),
            ("default", "sora-2", "openai"),
        ]
        # A model without fallbacks has one candidate: its own profile.
        assert [(c.profile, c.model) for c in router.candidates("sora-2")] == [("default", "sora-2")]
        await router.aclose()

    def test_a_model_the_profiles_adapter_does_not_know_stops_the_start_naming_the_entry(self) -> None:
        settings = settings_with({VEO: [FallbackTarget(profile="fal", model="fal-ai/no-such-family")]})
        with pytest.raises(ValueError) as refused:
            UpstreamRouter(settings)
        message = str(refused.value)
        assert message.startswith(f"VG_FALLBACKS['{VEO}'][0] (profile 'fal', model 'fal-ai/no-such-family')")
        assert "the fal adapter does not know this model" in message

    def test_an_unknown_profile_stops_the_start_even_in_settings_built_without_validation(self) -> None:
        # Settings copied with `model_copy` skip their validators; the router checks again.
        settings = settings_with().model_copy(update={"fallbacks": {VEO: [FallbackTarget(profile="gone", model="m")]}})
        with pytest.raises(ValueError, match=r"\[0\] \(profile 'gone', model 'm'\): upstream profile 'gone' is not"):
            UpstreamRouter(settings)

    def test_a_fallback_for_a_model_no_profile_renders_stops_the_start(self) -> None:
        settings = settings_with({"veo-9": [FallbackTarget(profile="fal", model=FAL_VEO)]})
        with pytest.raises(ValueError, match="no profile renders model 'veo-9' itself"):
            UpstreamRouter(settings)

    def test_a_candidate_named_twice_stops_the_start(self) -> None:
        settings = settings_with({VEO: [FallbackTarget(profile="veo", model=VEO)]})
        with pytest.raises(ValueError, match="already a candidate"):
            UpstreamRouter(settings)

    async def test_the_api_does_not_start_with_a_fallback_its_adapters_refuse(self) -> None:
        settings = settings_with({VEO: [FallbackTarget(profile="fal", model="fal-ai/no-such-family")]})
        settings = settings.model_copy(update={"webhooks": settings.webhooks.model_copy(update={"enabled": False})})
        app = create_app(settings)
        with pytest.raises(ValueError, match="VG_FALLBACKS"):
            async with app.router.lifespan_context(app):
                pass


class TestWhichCandidatesCanTakeIt:
    async def test_a_candidate_whose_table_cannot_take_the_request_is_skipped(self) -> None:
        router = UpstreamRouter(settings_with({"sora-2": [FallbackTarget(profile="veo", model=VEO)]}))
        # Veo renders 1920x1080; OpenAI's contract does not.
        able = fallbacks.able_candidates(
            router.candidates("sora-2"), command(model="sora-2", size="1920x1080", seconds="8")
        )
        assert [c.profile for c in able.candidates] == ["veo"]
        assert [(s.candidate.profile, s.reason) for s in able.skipped] == [("default", "unsupported")]
        # Both can take 1280x720 at 4 s: both stay, in order.
        able = fallbacks.able_candidates(router.candidates("sora-2"), command(model="sora-2"))
        assert [c.profile for c in able.candidates] == ["default", "veo"] and able.skipped == []
        await router.aclose()

    async def test_when_none_can_the_400_is_the_first_candidates(self) -> None:
        router = UpstreamRouter(veo_then_fal())
        with pytest.raises(InvalidRequest) as refused:
            fallbacks.able_candidates(router.candidates(VEO), command(seconds="12"))
        assert refused.value.param == "seconds"
        # Veo direct's message (the model the caller named), not fal's (which would name `fal-ai/veo3.1`).
        assert f"(model '{VEO}')" in refused.value.message
        await router.aclose()

    async def test_each_candidate_is_asked_with_its_own_model_id(self) -> None:
        router = UpstreamRouter(veo_then_fal())
        fal = router.candidates(VEO)[1]
        assert fallbacks.command_for(fal, command()) == command(model=FAL_VEO)
        own = router.candidates(VEO)[0]
        assert fallbacks.command_for(own, command()).model == VEO
        await router.aclose()


class TestWhatMovesOn:
    @pytest.mark.parametrize(
        ("error", "reason"),
        [
            (RateLimited("slow down", code="upstream_rate_limited"), "throttled"),
            (UpstreamUnavailable("paused", code="upstream_circuit_open"), "circuit_open"),
            (RateLimited("429 upstream"), "rate_limited"),
            (BacklogFull("line full", retry_after_seconds=5), "backlog_full"),
            (UpstreamUnavailable("Upstream is unreachable: ConnectError."), "unreachable"),
        ],
    )
    def test_what_certainly_started_nothing_moves_on(self, error: RateLimited | UpstreamError, reason: str) -> None:
        assert fallbacks.moves_on(error)
        assert fallbacks.skip_reason(error) == reason

    @pytest.mark.parametrize(
        "error",
        [
            UpstreamError("HTTP 500 after the create was sent", headers=dict(NO_RETRY_HEADERS)),
            UpstreamTimeout("no answer in time", headers=dict(NO_RETRY_HEADERS)),
            UpstreamError("no operation name", code="upstream_bad_response", headers=dict(NO_RETRY_HEADERS)),
            InvalidRequest("the prompt was refused", param="prompt"),
            UpstreamError("The gateway's upstream credentials were rejected.", code="upstream_auth_failed"),
        ],
    )
    def test_what_may_have_started_a_render_or_is_an_answer_does_not(self, error: GatewayError) -> None:
        assert not fallbacks.moves_on(error)


class TestUnavailable:
    def test_a_client_is_available_until_its_breaker_opens_or_a_429_pauses_it(self) -> None:
        settings = UpstreamSettings(base_url="http://u.test/v1", breaker_failures=2, breaker_cooldown_seconds=60)
        client = UpstreamClient(settings, transport=httpx.MockTransport(lambda _: httpx.Response(200)))
        assert client.unavailable() is None
        client._breaker.record_failure()
        assert client.unavailable() is None
        client._breaker.record_failure()
        paused = client.unavailable()
        assert isinstance(paused, UpstreamUnavailable) and paused.code == "upstream_circuit_open"
        assert 59 <= int(paused.headers["retry-after"]) <= 60
        client._breaker.record_success()
        client._throttled_until = time.monotonic() + 30  # what an upstream 429's Retry-After leaves behind
        throttled = client.unavailable()
        assert isinstance(throttled, RateLimited) and throttled.code == "upstream_rate_limited"
        assert 29 <= int(throttled.headers["retry-after"]) <= 30

    async def test_every_kinds_adapter_answers_for_its_own_client(self) -> None:
        settings = Settings(
            mode=Mode.DEV,
            upstreams={
                kind: UpstreamProfile(kind=kind, base_url=f"https://{kind}.example", sends_webhooks=False)
                for kind in ("gemini", "seedance", "fal", "replicate")
            },
        )
        router = UpstreamRouter(settings)
        for profile in router.profiles:
            adapter = router.adapter(profile)
            assert adapter.unavailable() is None, profile
            inner = adapter if isinstance(adapter, UpstreamClient) else adapter._http  # type: ignore[attr-defined]
            for _ in range(settings.upstream_profile(profile).breaker_failures):
                inner._breaker.record_failure()
            refusal = adapter.unavailable()
            assert refusal is not None and refusal.code == "upstream_circuit_open", profile
        await router.aclose()


class TestTheProvidersModelAfterTheCreate:
    def video(self, **fields: object) -> Video:
        values: dict[str, object] = {
            "id": "video_x",
            "caller_id": uuid.uuid4(),
            "model": VEO,
            "size": "1280x720",
            "seconds": "4",
            "prompt": "a heron",
            "status": "queued",
            "progress": 0,
            "upstream_profile": "fal",
            **fields,
        }
        return Video(**values)

    def test_a_waiting_create_is_sent_under_the_model_id_of_its_profile(self) -> None:
        assert admission.command_for(self.video(upstream_model=FAL_VEO), None).model == FAL_VEO
        # NULL: the caller's model is the provider's.
        assert admission.command_for(self.video(upstream_model=None), None).model == VEO

    def test_the_caller_keeps_their_model(self) -> None:
        video = self.video(upstream_model=FAL_VEO)
        assert (video.model, video.provider_model) == (VEO, FAL_VEO)


class TestUsagePerProfile:
    def test_rows_per_profile_and_model_are_summed_per_profile_each_at_its_models_price(self) -> None:
        def row(profile: str, model: str, renders: int, seconds: int) -> ProfileUsageRow:
            return ProfileUsageRow(profile, model, renders, renders, 0, 0, 0, renders, seconds)

        limits = LimitSettings(prices_usd_per_second={"sora-2": 0.10, VEO: 0.40})
        lines = profile_usage(
            [row("veo", VEO, 1, 8), row("fal", VEO, 2, 8), row("fal", "sora-2", 1, 4), row("gone", "sora-2", 1, 4)],
            kinds={"veo": "gemini", "fal": "fal"},
            settings=limits,
        )
        assert [(line.profile, line.kind, line.renders, line.billed_seconds, line.cost_usd) for line in lines] == [
            ("fal", "fal", 3, 12, Decimal("3.60")),
            ("gone", None, 1, 4, Decimal("0.40")),
            ("veo", "gemini", 1, 8, Decimal("3.20")),
        ]
