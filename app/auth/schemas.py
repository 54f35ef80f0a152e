"""Wire shapes of the admin API for callers and keys (`/v1/admin/callers`, `/v1/admin/keys`). No key digest or
lookup ever appears in any of them: a key is shown once, when it is made (`KeyCreated`), and then by prefix."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from app.auth.repository import KeyRow
from app.models import ApiKey, Caller

# Admin bodies name every field they may have: an unknown one is a 400, not silently ignored.
STRICT = ConfigDict(extra="forbid")
# What Postgres would refuse with an error (a 500) is refused here with a 400: the counters are INTEGER
# columns, and text cannot hold a NUL (labels are printable, as the console shows them).
MAX_INT4 = 2**31 - 1
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


class CallerCreate(BaseModel):
    model_config = STRICT
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    label: str = Field(default="", max_length=200, pattern=PRINTABLE, description="Label of the first key")
    expires_at: AwareDatetime | None = Field(default=None, description="Expiry of the first key")


class KeyCreate(BaseModel):
    model_config = STRICT
    label: str = Field(default="", max_length=200, pattern=PRINTABLE)
    expires_at: AwareDatetime | None = None
    requests_per_minute: int | None = Field(default=None, ge=1, le=MAX_INT4)


class KeyUpdate(BaseModel):
    model_config = STRICT
    requests_per_minute: int | None = Field(default=None, ge=1, le=MAX_INT4, description="null: the caller's limit")


class CallerObject(BaseModel):
    object: Literal["caller"] = "caller"
    id: uuid.UUID
    name: str
    created_at: datetime
    disabled_at: datetime | None

    @classmethod
    def from_row(cls, caller: Caller) -> CallerObject:
        return cls(id=caller.id, name=caller.name, created_at=caller.created_at, disabled_at=caller.disabled_at)


class CallerList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CallerObject]


class KeyObject(BaseModel):
    object: Literal["api_key"] = "api_key"
    id: uuid.UUID
    caller_id: uuid.UUID
    prefix: str = Field(description="The first characters of the key, to tell keys apart")
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = None
    requests_per_minute: int | None

    @classmethod
    def from_row(cls, key: ApiKey, *, last_used_at: datetime | None = None) -> KeyObject:
        return cls(
            id=key.id,
            caller_id=key.caller_id,
            prefix=key.prefix,
            label=key.label,
            created_at=key.created_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            last_used_at=last_used_at,
            requests_per_minute=key.requests_per_minute,
        )

    @classmethod
    def from_key_row(cls, row: KeyRow) -> KeyObject:
        return cls.from_row(row.key, last_used_at=row.last_used_at)


class KeyCreated(KeyObject):
    key: str = Field(description="The key itself; shown this once, stored only as a digest")


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyObject]


class CallerCreated(BaseModel):
    caller: CallerObject
    key: KeyCreated
