"""The committed `openapi.yaml` is generated from the app; a test keeps the two identical."""

from __future__ import annotations

import yaml
from pydantic import SecretStr

from app.core.config import Mode, Settings, WebhookSettings
from app.main import create_app

# The document needs the webhook route mounted; the secret only has to be well-formed.
DOCUMENTATION_SECRET = SecretStr("whsec_" + "A" * 43 + "=")


def openapi_yaml() -> str:
    settings = Settings(mode=Mode.DEV, webhooks=WebhookSettings(secrets=DOCUMENTATION_SECRET))
    document = create_app(settings).openapi()
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120)
