"""Every table of the gateway; importing this package registers them all on one metadata for Alembic."""

from app.core.db import Base
from app.models.archive_job import ACTIVE_STATES, ArchiveJob, JobKind, JobState
from app.models.asset import Asset, AssetState, Variant
from app.models.callback import (
    AttemptOutcome,
    CallbackAttempt,
    CallbackDelivery,
    CallbackEndpoint,
    CallbackSecret,
    DeliveryState,
)
from app.models.caller import ApiKey, Caller
from app.models.character import Character
from app.models.console import CONSOLE_INDEXES as CONSOLE_INDEXES
from app.models.idempotency import IdempotencyRecord
from app.models.limits import KeyRequestWindow as KeyRequestWindow
from app.models.video import Video, VideoOrigin, VideoStatus
from app.models.video_input import VideoInput
from app.models.webhook_event import EventOutcome, WebhookEvent

__all__ = [
    "ACTIVE_STATES",
    "ApiKey",
    "ArchiveJob",
    "Asset",
    "AssetState",
    "AttemptOutcome",
    "Base",
    "CallbackAttempt",
    "CallbackDelivery",
    "CallbackEndpoint",
    "CallbackSecret",
    "Caller",
    "Character",
    "DeliveryState",
    "EventOutcome",
    "IdempotencyRecord",
    "JobKind",
    "JobState",
    "Variant",
    "Video",
    "VideoInput",
    "VideoOrigin",
    "VideoStatus",
    "WebhookEvent",
]
