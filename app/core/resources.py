"""What the API's lifespan builds, typed: one frozen `AppResources` per app, and its one accessor.

The lifespan (`app.main`) builds the resources, stores them once on the app (`install_resources`) and closes
them at shutdown. Everything else reads them through `resources(request)` (routes, dependencies) or
`resources_of(app)` (middleware, tests): nothing else reads or writes `app.state`. Routes take them through
the dependency aliases of `app.deps` (`SettingsDep`, `SessionDep`, `VideoServiceDep`, ...).

The domain types are imported for type checking only: this module sits in `app.core`, below the domains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from app.archive.storage import ArchiveStorage
    from app.archive.wakeup import WakeUps
    from app.auth.key_cache import KeyCache
    from app.auth.throttle import AdminKeyThrottle
    from app.characters.service import CharacterService
    from app.console.session import SessionKeys
    from app.console.tap import DeliveryLog
    from app.core.config import Settings
    from app.core.db import Database
    from app.readiness import Readiness
    from app.upstream.router import UpstreamRouter
    from app.videos.service import VideoService

STATE_NAME = "resources"


@dataclass(frozen=True)
class AppResources:
    """The process-wide objects of one API app: built by its lifespan, shared by every request."""

    settings: Settings
    database: Database
    upstreams: UpstreamRouter
    video_service: VideoService
    character_service: CharacterService
    archive_storage: ArchiveStorage  # the archive, and the console's presigned URLs
    readiness: Readiness
    # Per process, in memory (app/auth/throttle.py, app/auth/key_cache.py): shared by the admin API and the console.
    admin_throttle: AdminKeyThrottle
    key_cache: KeyCache
    console_keys: SessionKeys | None  # None without an admin key: then there is no console
    console_deliveries: DeliveryLog  # written by the `WebhookTap` middleware, read by the console
    # Wakes idle workers when a delivery queues work (app/archive/wakeup.py); None: `VG_WORKER__WAKE_ON_NOTIFY` off.
    wake_workers: WakeUps | None = None


def install_resources(app: Starlette, resources: AppResources) -> None:
    """Store `resources` on `app` (the lifespan does, once; a test may swap in a variant)."""
    setattr(app.state, STATE_NAME, resources)


def resources_of(app: Starlette) -> AppResources:
    found = getattr(app.state, STATE_NAME, None)
    if not isinstance(found, AppResources):
        raise RuntimeError("the app's resources are not there: its lifespan has not run")
    return found


def resources(request: Request) -> AppResources:
    """The resources of the app serving `request`."""
    return resources_of(request.app)
