"""Several upstreams: one adapter per named profile, and which profile renders which model.

The profile named "default" is `settings.upstream`; `settings.upstreams` adds more. Each profile's `kind`
picks its adapter once, at start (`openai`: OpenAI's contract; `gemini`: Veo on the Gemini API). A model
listed in a named profile's `models` goes there; a model listed in the default's `models` (OpenAI's, unless
configured) goes to the default; any other model is served by no profile and refused (`check_model`), unless
the default's `models` is `["*"]`, which sends it to the default as before. A video remembers its profile, so
everything after the create (polls, content, delete, remix, the worker) talks to the same one.

Fallbacks (`VG_FALLBACKS`): a model may name further profiles, each with the model id its provider knows, to
try when its own cannot take a create. `candidates` lists them, the model's own profile first; which one a
create goes to is the video service's decision (app/videos/service.py). They are checked here, once, when the
adapters are built: a profile that is not configured, a model its adapter's capability table does not know, or
a candidate named twice stops the process at start with a ValueError naming the entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from app.core.config import ANY_MODEL, DEFAULT_PROFILE, Settings, UpstreamSettings
from app.core.errors import InvalidRequest
from app.upstream.client import UpstreamClient
from app.upstream.gemini import GeminiAdapter
from app.upstream.provider import VideoProvider


class UnknownProfile(KeyError):
    """A video names a profile that is no longer configured."""


@dataclass(frozen=True)
class Candidate:
    """One place a create may render: a profile, its adapter, and the model id that profile's provider knows."""

    profile: str
    model: str
    adapter: VideoProvider


def build_adapter(
    settings: UpstreamSettings, *, profile: str, transport: httpx.AsyncBaseTransport | None, allow_http: bool
) -> VideoProvider:
    # The live providers' adapters are imported only when a profile uses them.
    if settings.kind == "gemini":
        return GeminiAdapter(settings, profile=profile, transport=transport, allow_http_redirects=allow_http)
    if settings.kind == "seedance":
        from app.upstream.seedance import SeedanceAdapter

        return SeedanceAdapter(settings, profile=profile, transport=transport, allow_http_redirects=allow_http)
    if settings.kind == "fal":
        from app.upstream.fal import FalAdapter

        return FalAdapter(settings, profile=profile, transport=transport, allow_http_redirects=allow_http)
    if settings.kind == "replicate":
        from app.upstream.replicate import ReplicateAdapter

        return ReplicateAdapter(settings, profile=profile, transport=transport, allow_http_redirects=allow_http)
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
        self._pass_through = ANY_MODEL in settings.upstream.models
        # What a refusal lists: the default's models first (OpenAI's, as OpenAI's own refusal lists them).
        default_models = [model for model in settings.upstream.models if model != ANY_MODEL]
        self._served = list(dict.fromkeys([*default_models, *self._model_profiles]))
        for model in default_models:
            # A model listed by a named profile renders there, also when the default lists it too.
            self._model_profiles.setdefault(model, DEFAULT_PROFILE)
        self._fallbacks = {model: self._fallback_chain(model, settings) for model in settings.fallbacks}

    def _fallback_chain(self, model: str, settings: Settings) -> list[Candidate]:
        """The checked fallbacks of `model`; ValueError naming the first entry that cannot work."""
        where = f"VG_FALLBACKS[{model!r}]"
        if not self.serves(model):
            raise ValueError(f"{where}: no profile renders model {model!r} itself, so nothing would fall back")
        seen = {(self.profile_for_model(model), model)}
        chain: list[Candidate] = []
        for index, target in enumerate(settings.fallbacks[model]):
            entry = f"{where}[{index}] (profile {target.profile!r}, model {target.model!r})"
            adapter = self._adapters.get(target.profile)
            if adapter is None:
                raise ValueError(f"{entry}: upstream profile {target.profile!r} is not configured")
            try:
                # Unknown models are refused by the capability tables of the kinds that have one per model (fal,
                # Replicate, Seedance); OpenAI's contract and Veo take every model id with one table.
                adapter.capabilities(target.model)
            except InvalidRequest as exc:
                raise ValueError(
                    f"{entry}: the {adapter.kind} adapter does not know this model: {exc.message}"
                ) from None
            if (target.profile, target.model) in seen:
                raise ValueError(f"{entry}: this profile and model are already a candidate for {model!r}")
            seen.add((target.profile, target.model))
            chain.append(Candidate(profile=target.profile, model=target.model, adapter=adapter))
        return chain

    @property
    def profiles(self) -> list[str]:
        return list(self._adapters)

    @property
    def served_models(self) -> list[str]:
        """The models some profile lists (with `["*"]` in the default, others are served too)."""
        return list(self._served)

    def serves(self, model: str) -> bool:
        return self._pass_through or model in self._model_profiles

    def check_model(self, model: str) -> None:
        """A 400 naming `model` and listing the served models when no profile renders `model`.

        Called before anything is charged or stored: an unknown model would otherwise reach the budget (which
        charges it the highest price) and upstream (which refuses it after the row exists, or renders it).
        """
        if self.serves(model):
            return
        choices = ", ".join(f"'{served}'" for served in self._served)
        raise InvalidRequest(
            f"Invalid value: '{model[:100]}'. Supported values are: {choices}.",
            param="model",
            code="invalid_value",
        )

    def profile_for_model(self, model: str) -> str:
        """The profile that renders `model`; the default for a model no profile lists (see `check_model`)."""
        return self._model_profiles.get(model, DEFAULT_PROFILE)

    def adapter(self, profile: str) -> VideoProvider:
        try:
            return self._adapters[profile]
        except KeyError:
            raise UnknownProfile(profile) from None

    def adapter_for_model(self, model: str) -> VideoProvider:
        return self.adapter(self.profile_for_model(model))

    def candidates(self, model: str) -> list[Candidate]:
        """Where a create of `model` may render, in the order to try: its own profile, then its fallbacks."""
        profile = self.profile_for_model(model)
        return [Candidate(profile=profile, model=model, adapter=self.adapter(profile)), *self._fallbacks.get(model, [])]

    async def aclose(self) -> None:
        for adapter in self._adapters.values():
            await adapter.aclose()
