"""Backoff schedules, each named once: how long to wait before trying again.

- `full_jitter`: exponential, capped, anywhere from 0 to the ceiling (AWS's "full jitter"). The upstream
  client's own retries within one request (app/upstream/client.py): many API pods retrying one upstream spread
  out, and a request is never held longer than the ceiling.
- `equal_jitter`: exponential, capped, half fixed and half random. The archive jobs' retries
  (app/archive/jobs.py): spread, yet a job always waits at least half the ceiling.
- `fixed_schedule`: a configured list of delays (the last repeats), each stretched by up to a ratio. The
  callbacks' delivery attempts (app/callbacks/delivery.py, the Standard Webhooks schedule).
- `capped_exponential`: the ceiling of the exponential ones, with no jitter: the admin-key lockouts
  (app/auth/throttle.py), where a guesser must not be able to count on a shorter wait.

Pure functions; `rng` is for tests (the module's generator otherwise).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Final

# 2**64 times any base is past every cap; a larger exponent would only cost time (and overflow a float at 1024).
MAX_DOUBLINGS: Final = 64


def capped_exponential(step: int, *, base: float, cap: float) -> float:
    """`base` doubled `step` times (step 0 is `base`), at most `cap`."""
    return min(cap, base * 2.0 ** min(max(step, 0), MAX_DOUBLINGS))


def full_jitter(step: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Uniform in [0, capped_exponential(step)]."""
    return (rng or random).uniform(0, capped_exponential(step, base=base, cap=cap))


def equal_jitter(step: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Half of capped_exponential(step), plus up to the other half at random."""
    ceiling = capped_exponential(step, base=base, cap=cap)
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def fixed_schedule(
    attempt: int, schedule: Sequence[float], *, jitter_ratio: float, rng: random.Random | None = None
) -> float:
    """The delay after attempt number `attempt` (1-based; past the schedule's end its last delay repeats),
    stretched by a random fraction of itself up to `jitter_ratio` (never shortened)."""
    delay = schedule[min(attempt - 1, len(schedule) - 1)]
    jitter = (rng or random).uniform(0, jitter_ratio) if jitter_ratio else 0.0
    return delay * (1 + jitter)
