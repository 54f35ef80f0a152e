"""Every table of the gateway; importing this package registers them all on one metadata for Alembic."""

from app.core.db import Base
from app.models.asset import Asset, AssetState, Variant
from app.models.caller import ApiKey, Caller
from app.models.video import Video, VideoStatus

__all__ = ["ApiKey", "Asset", "AssetState", "Base", "Caller", "Variant", "Video", "VideoStatus"]
