"""The input_reference image of a create waiting for submission (admission control), until it is sent upstream.

A create on the direct path hands its image to upstream straight away and keeps nothing; one accepted as
`queued` under a profile's limits is sent later by the worker, which rebuilds the upstream command from the
video row and this one. Deleted once the create has been sent (or settled without being sent); removed with
its video.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base


class VideoInput(Base):
    __tablename__ = "video_inputs"

    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True)
    # Bounded by `api.max_image_bytes` (checked at acceptance, as on the direct path).
    image: Mapped[bytes] = mapped_column(LargeBinary)
    content_type: Mapped[str] = mapped_column(String(100))
    filename: Mapped[str] = mapped_column(Text)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
