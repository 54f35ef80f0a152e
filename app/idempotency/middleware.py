"""Installing idempotency on the app (placeholder until app/idempotency is built: nothing is replayed yet)."""

from __future__ import annotations

from fastapi import FastAPI

from app.core.config import Settings


def install(app: FastAPI, settings: Settings) -> None:
    """Wrap the paid POST routes of `app` with Idempotency-Key handling."""
