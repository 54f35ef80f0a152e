"""Callback endpoints and delivery logs for callers (placeholder)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
