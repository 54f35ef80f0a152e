"""Admission of paid renders (placeholder: everything is admitted until app/limits is built)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import LimitSettings
from app.models import Caller


async def admit_render(
    session: AsyncSession, *, caller: Caller, model: str, seconds: str, settings: LimitSettings
) -> None:
    """Raise (429, before any upstream call) when the caller is over its concurrency or spend budget."""
