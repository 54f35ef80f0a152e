"""Several upstreams: one adapter per named profile, and which profile renders which model.

The profile named "default" is `settings.upstream`; `settings.upstreams` adds more. Each profile's `kind`
picks its adapter once, at start (`openai`: OpenAI's contract; `gemini`: Veo on the Gemini API). A model
listed in a profile's `models` goes there; every other model goes to the default. A video remembers its
profile, so everything after the create (polls, content, delete, remix, the worker) talks to the same one.
"""

from __future__ import annotations

import httpx

from app.core.config import DEFAULT_PROFILE, Settings, UpstreamSettings
from app.upstream.client import UpstreamClient
from app.upstream.gemini import GeminiAdapter
from app.upstream.provider import VideoProvider


class UnknownProfile(KeyError):
    """A video names a profile that is no longer configured."""


def build_adapter(
    settings: UpstreamSettings, *, profile: str, transport: httpx.AsyncBaseTransport | None, allow_http: bool
) -> VideoProvider:
    if settings.kind == "gemini":
        return GeminiAdapter(settings, profile=profile, transport=transport, allow_http_redirects=allow_http)
    return UpstreamClient(settings, transport=transport, allow_http_redirects=allow_http, profile=profile)


class UpstreamRouter:
    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        allow_http = settings.is_dev
        self._adapters: dict[str, VideoProvider] = {
            DEFAULT_PROFILE: build_adapter(
                settings.upstream, profile=DEFAULT_PROFILE, transport=transport, allow_http=allow_http
            )
        }
        self._model_profiles: dict[str, str] = {}
        for name, profile in settings.upstreams.items():
            self._adapters[name] = build_adapter(profile, profile=name, transport=transport, allow_http=allow_http)
            self._model_profiles.update({model: name for model in profile.models})

    @property
    def profiles(self) -> list[str]:
        return list(self._adapters)

    def profile_for_model(self, model: str) -> str:
        return self._model_profiles.get(model, DEFAULT_PROFILE)

    def adapter(self, profile: str) -> VideoProvider:
        try:
            return self._adapters[profile]
        except KeyError:
            raise UnknownProfile(profile) from None

    def adapter_for_model(self, model: str) -> VideoProvider:
        return self.adapter(self.profile_for_model(model))

    async def aclose(self) -> None:
        for adapter in self._adapters.values():
            await adapter.aclose()
