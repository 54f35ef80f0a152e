"""`/v1/usage` and the admin API (placeholder)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
