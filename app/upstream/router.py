"""Several upstreams: one client per named profile, and which profile renders which model.

The profile named "default" is `settings.upstream`; `settings.upstreams` adds more. A model listed in a
profile's `models` goes there; every other model goes to the default. A video remembers its profile, so
everything after the create (polls, content, delete, remix, the worker) talks to the same provider.
"""

from __future__ import annotations

import httpx

from app.core.config import DEFAULT_PROFILE, Settings
from app.upstream.client import UpstreamClient


class UnknownProfile(KeyError):
    """A video names a profile that is no longer configured."""


class UpstreamRouter:
    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        allow_http = settings.is_dev
        self._clients = {
            DEFAULT_PROFILE: UpstreamClient(settings.upstream, transport=transport, allow_http_redirects=allow_http)
        }
        self._model_profiles: dict[str, str] = {}
        for name, profile in settings.upstreams.items():
            self._clients[name] = UpstreamClient(
                profile, transport=transport, allow_http_redirects=allow_http, profile=name
            )
            self._model_profiles.update({model: name for model in profile.models})

    @property
    def profiles(self) -> list[str]:
        return list(self._clients)

    def profile_for_model(self, model: str) -> str:
        return self._model_profiles.get(model, DEFAULT_PROFILE)

    def client(self, profile: str) -> UpstreamClient:
        try:
            return self._clients[profile]
        except KeyError:
            raise UnknownProfile(profile) from None

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
