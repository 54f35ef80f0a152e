"""Settings for tests: the gateway's `Settings` over a test database, and the secrets every tier shares."""

from __future__ import annotations

from pydantic import SecretStr

from app.core.config import (
    ApiSettings,
    DatabaseSettings,
    Mode,
    Settings,
    UpstreamSettings,
    WebhookSettings,
)

MIB = 1024 * 1024
# The simulator's API key: the gateway's upstream key in `make_settings`, and every test simulator's own.
SIMULATOR_KEY = "sim-key"
# A `whsec_` secret for the tests' webhook receiver and simulator (24 random bytes, base64).
TEST_WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def make_settings(database_url: str, *, upstream_base_url: str = "http://upstream.test/v1", **api: object) -> Settings:
    """Dev-mode settings on `database_url`, the simulator's key upstream, fast retries; `api` overrides
    `ApiSettings` fields."""
    return Settings(
        mode=Mode.DEV,
        db=DatabaseSettings(url=SecretStr(database_url), pool_size=5),
        api=ApiSettings.model_validate({"refresh_min_interval_seconds": 0, **api}),
        upstream=UpstreamSettings(
            base_url=upstream_base_url,
            api_key=SecretStr(SIMULATOR_KEY),
            retry_base_seconds=0.01,
            retry_max_seconds=0.05,
        ),
        webhooks=WebhookSettings(secrets=SecretStr(TEST_WEBHOOK_SECRET)),
    )
