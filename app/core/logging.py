"""Process logging: one line per record, UTC timestamps. Secrets never reach here (they are SecretStr)."""

from __future__ import annotations

import logging

# These log request URLs (query strings included) and, at DEBUG, botocore logs SigV4 signatures, which
# for a presigned URL are the credential itself: they stay at WARNING whatever our own level is.
LEAKY_LOGGERS = ("httpx", "httpcore", "botocore", "boto3", "s3transfer", "urllib3")


def quiet_leaky_loggers() -> None:
    for name in LEAKY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        force=True,
    )
    quiet_leaky_loggers()
