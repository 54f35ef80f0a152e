"""Fallbacks across profiles: which of a model's candidates may take a create, and what moves a create on.

A model's candidates (app/upstream/router.py: its own profile, then `VG_FALLBACKS`) are tried in order. The
policy here is pure and owned here; the video service applies it (app/videos/service.py):

- a candidate whose capability table cannot take the request (these seconds, this size, an image) is skipped;
  when none can, the caller gets the first candidate's 400, as without fallbacks;
- a create moves on to the next candidate only when it certainly started nothing upstream: the profile was
  paused (circuit open, a 429's Retry-After in force), its line of waiting creates was full, upstream answered
  429, or it could not be reached at all. A refusal of the request itself (4xx) is the answer, and a failure
  after the create may have reached upstream (`render_may_have_started`) is never sent anywhere else: a second
  render would be paid for twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from app.archive.admission import BacklogFull
from app.core.errors import GatewayError, InvalidRequest, RateLimited, UpstreamUnavailable
from app.upstream.client import CIRCUIT_OPEN, THROTTLED, render_may_have_started
from app.upstream.router import Candidate
from app.upstream.schemas import CreateVideoCommand

# Why a candidate was passed over: the `reason` of `vg_create_fallbacks_total` and of the INFO line.
UNSUPPORTED: Final = "unsupported"
CIRCUIT: Final = "circuit_open"
PAUSED_BY_429: Final = "throttled"
RATE_LIMITED: Final = "rate_limited"
BACKLOG_FULL: Final = "backlog_full"
UNREACHABLE: Final = "unreachable"


@dataclass(frozen=True)
class Skipped:
    """A candidate a create passed over, and why."""

    candidate: Candidate
    reason: str


@dataclass(frozen=True)
class Able:
    """The candidates that can take the request, in order, and those skipped because they cannot."""

    candidates: list[Candidate]
    skipped: list[Skipped]


def command_for(candidate: Candidate, command: CreateVideoCommand) -> CreateVideoCommand:
    """The create as `candidate`'s provider must receive it: its own model id, everything else as asked."""
    return command if candidate.model == command.model else dataclasses.replace(command, model=candidate.model)


def able_candidates(candidates: Sequence[Candidate], command: CreateVideoCommand) -> Able:
    """The candidates whose capability tables take `command`; the first candidate's 400 when none does."""
    able: list[Candidate] = []
    skipped: list[Skipped] = []
    first_refusal: InvalidRequest | None = None
    for candidate in candidates:
        try:
            candidate.adapter.check_create(command_for(candidate, command))
        except InvalidRequest as exc:
            first_refusal = first_refusal or exc
            skipped.append(Skipped(candidate, UNSUPPORTED))
            continue
        able.append(candidate)
    if not able:
        assert first_refusal is not None, "a model always has its own profile as a candidate"
        raise first_refusal
    return Able(able, skipped)


def moves_on(error: GatewayError) -> bool:
    """Whether a create that failed with `error` may be tried at the next candidate: nothing started upstream."""
    if render_may_have_started(error):
        return False
    # A 429 (ours while paused, the line's, or upstream's) or upstream never reached (refused, circuit open).
    return isinstance(error, RateLimited | UpstreamUnavailable)


def skip_reason(error: GatewayError) -> str:
    """The reason label of an error `moves_on` accepts."""
    if isinstance(error, BacklogFull):
        return BACKLOG_FULL
    if error.code == THROTTLED:
        return PAUSED_BY_429
    if error.code == CIRCUIT_OPEN:
        return CIRCUIT
    if isinstance(error, RateLimited):
        return RATE_LIMITED
    return UNREACHABLE


def describe(skipped: Sequence[Skipped]) -> str:
    """`veo (circuit_open), openai (unsupported)`: the skipped candidates for a log line."""
    return ", ".join(f"{entry.candidate.profile} ({entry.reason})" for entry in skipped)
