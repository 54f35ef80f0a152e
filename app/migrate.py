"""Running Alembic from Python: `video-gateway migrate`, the test fixtures and the dev stack use this."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

SOURCE_ROOT = Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """The checkout (editable install) or, in the container image, the working directory holding them."""
    return SOURCE_ROOT if (SOURCE_ROOT / "alembic.ini").exists() else Path.cwd()


def alembic_config(database_url: str) -> Config:
    root = project_root()
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    config.attributes["database_url"] = database_url
    config.attributes["skip_logging_config"] = True
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)
