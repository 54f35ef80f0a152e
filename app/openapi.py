"""The committed `openapi.yaml` is generated from the app; a test keeps the two identical."""

from __future__ import annotations

import yaml

from app.core.config import Mode, Settings
from app.main import create_app


def openapi_yaml() -> str:
    document = create_app(Settings(mode=Mode.DEV)).openapi()
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120)
