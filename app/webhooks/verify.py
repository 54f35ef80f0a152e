"""Standard Webhooks signature checks for upstream deliveries, on the raw body bytes.

We parse and bound the three headers ourselves and only borrow the HMAC from `standardwebhooks`
(`Webhook.sign`). `Webhook.verify` is not used because it lets malformed signature items escape as
`ValueError`/`binascii.Error` (a 500 for `v1`, `v1,a,b`, `v1,abc`), accepts fractional timestamps (and signs
the floored value, not the header text), splits on single spaces only, and reads the wall clock.

Every failure is a `WebhookMalformed` (400: something is missing, repeated, oversized or unparseable) or a
`WebhookSignatureInvalid` (401: well-formed but not authentic, or outside the replay window). Messages name
the header at fault, never a secret or a signature.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from standardwebhooks import Webhook

from app.core.errors import WebhookMalformed, WebhookSignatureInvalid

Clock = Callable[[], float]

# Both directions, fixed: the spec's libraries and OpenAI's SDK use 5 minutes; a setting could be set to 0 or
# None, which some verifiers (Stripe's) read as "skip the check".
TOLERANCE_SECONDS: Final = 300

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 (the scheme prefix, not a secret)
SECRET_MIN_BYTES: Final = 24
SECRET_MAX_BYTES: Final = 64

ID_HEADER: Final = "webhook-id"
TIMESTAMP_HEADER: Final = "webhook-timestamp"
SIGNATURE_HEADER: Final = "webhook-signature"

# The id is stored (webhook_events.webhook_id is 200 chars) and signed; the spec forbids "." in it, because it
# separates the signed parts. Visible ASCII without ".": "!" to "-", then "/" to "~".
_WEBHOOK_ID = re.compile(r"[!-\-/-~]{1,200}")
# Whole seconds only, in the header's own canonical form: the signed text is the header text, while the
# library signs `floor(value)`, so "1750000000.0" or "01750000000" would sign something else. 12 digits
# reach the year 33658 and keep `int()` trivial.
_TIMESTAMP = re.compile(r"[1-9][0-9]{0,11}")
# One `v1,<base64>` is 47 chars; a rotation sends one per active secret. These bounds keep the work per
# request small whatever the sender puts in the header.
MAX_SIGNATURE_HEADER_CHARS: Final = 4096
MAX_SIGNATURES: Final = 32
_SIGNATURE_HEADER = re.compile(r"[\t -~]*")  # visible ASCII, spaces and tabs
_HMAC_SHA256_BYTES: Final = 32


@dataclass(frozen=True)
class SignedDelivery:
    """A delivery whose signature matched one of our secrets within the replay window."""

    webhook_id: str
    timestamp: int
    payload: str  # the body exactly as signed, decoded as UTF-8


def check_secrets(secrets: list[str]) -> None:
    """Refuse to run without a usable secret: at least one, each `whsec_` + base64 of 24 to 64 bytes.

    Unprefixed secrets are refused rather than guessed at: the `openai` SDK uses them as raw bytes and
    `standardwebhooks` base64-decodes them, so the same string means two different keys.
    """
    if not secrets:
        raise ValueError("no webhook secret is configured (VG_WEBHOOKS__SECRETS); set one or disable webhooks")
    for position, secret in enumerate(secrets, start=1):
        # The messages say which secret (by position) and why, never the secret itself.
        if not secret.startswith(SECRET_PREFIX):
            raise ValueError(f"webhook secret #{position} does not start with {SECRET_PREFIX!r}")
        encoded = secret[len(SECRET_PREFIX) :]
        try:
            # Unpadded base64 is accepted, as the library accepts it.
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"webhook secret #{position} is not valid base64 after {SECRET_PREFIX!r}") from None
        if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
            raise ValueError(
                f"webhook secret #{position} decodes to {len(key)} bytes; "
                f"expected {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES}"
            )


class Verifier:
    """Checks deliveries against every active secret (rotation: any match is enough)."""

    def __init__(self, secrets: Sequence[str], *, clock: Clock = time.time) -> None:
        check_secrets(list(secrets))
        self._signers = tuple(Webhook(secret) for secret in secrets)
        self._clock = clock

    async def check(self, body: bytes, headers: Mapping[str, str]) -> SignedDelivery:
        """`verify`, as the receiver calls every kind's verifier (app/webhooks/kinds.py)."""
        return self.verify(body, headers)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> SignedDelivery:
        """The authentic delivery, or `WebhookMalformed` / `WebhookSignatureInvalid`.

        `headers` may repeat a name (Starlette's `Headers.items()` does); a repeated webhook header is refused.
        """
        webhook_id, timestamp, candidates = parse_headers(headers)
        now = self._clock()
        if timestamp < now - TOLERANCE_SECONDS:
            raise WebhookSignatureInvalid("Webhook timestamp is too old.", param=TIMESTAMP_HEADER)
        if timestamp > now + TOLERANCE_SECONDS:
            raise WebhookSignatureInvalid("Webhook timestamp is too new.", param=TIMESTAMP_HEADER)
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError:
            # Both reference verifiers sign the body as UTF-8 text; other bytes can never verify.
            raise WebhookMalformed("Webhook body is not UTF-8.") from None
        signed_at = datetime.fromtimestamp(timestamp, tz=UTC)
        for signer in self._signers:
            expected = _mac_of(signer.sign(webhook_id, signed_at, payload))
            if any(hmac.compare_digest(expected, candidate) for candidate in candidates):
                return SignedDelivery(webhook_id=webhook_id, timestamp=timestamp, payload=payload)
        raise WebhookSignatureInvalid("No webhook signature matches.", param=SIGNATURE_HEADER)


def parse_headers(headers: Mapping[str, str]) -> tuple[str, int, list[bytes]]:
    """The webhook id, the timestamp and the decoded `v1` MACs; `WebhookMalformed` unless all are well formed.

    Entries of other versions (`v1a,…` is ed25519) are skipped, as the spec says; no `v1` entry at all is a
    signature failure (401), not a malformed header.
    """
    values = _webhook_headers(headers)
    webhook_id = values.get(ID_HEADER, "")
    timestamp_text = values.get(TIMESTAMP_HEADER, "")
    signature_text = values.get(SIGNATURE_HEADER, "")
    for name, value in (
        (ID_HEADER, webhook_id),
        (TIMESTAMP_HEADER, timestamp_text),
        (SIGNATURE_HEADER, signature_text),
    ):
        if not value:
            raise WebhookMalformed(f"Missing {name} header.", param=name)
    if not _WEBHOOK_ID.fullmatch(webhook_id):
        raise WebhookMalformed(f"{ID_HEADER} must be 1 to 200 visible ASCII characters without '.'.", param=ID_HEADER)
    if not _TIMESTAMP.fullmatch(timestamp_text):
        raise WebhookMalformed(f"{TIMESTAMP_HEADER} must be whole Unix seconds (digits only).", param=TIMESTAMP_HEADER)
    return webhook_id, int(timestamp_text), _v1_macs(signature_text)


def _webhook_headers(headers: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER):
            if key in found:
                raise WebhookMalformed(f"The {key} header is repeated.", param=key)
            found[key] = value
    return found


def _v1_macs(header: str) -> list[bytes]:
    # Length first: nothing below runs on an unbounded header.
    if len(header) > MAX_SIGNATURE_HEADER_CHARS or not _SIGNATURE_HEADER.fullmatch(header):
        raise WebhookMalformed(
            f"{SIGNATURE_HEADER} must be at most {MAX_SIGNATURE_HEADER_CHARS} visible ASCII characters.",
            param=SIGNATURE_HEADER,
        )
    entries = header.split()  # any whitespace, as the openai SDK splits (the spec says spaces)
    if not entries or len(entries) > MAX_SIGNATURES:
        raise WebhookMalformed(
            f"{SIGNATURE_HEADER} must list 1 to {MAX_SIGNATURES} signatures.", param=SIGNATURE_HEADER
        )
    macs: list[bytes] = []
    for entry in entries:
        version, comma, value = entry.partition(",")
        if not version or not comma or not value or "," in value:
            raise WebhookMalformed(
                f"Each {SIGNATURE_HEADER} entry must be '<version>,<signature>'.", param=SIGNATURE_HEADER
            )
        if version != "v1":
            continue
        try:
            mac = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            mac = b""
        if len(mac) != _HMAC_SHA256_BYTES:
            raise WebhookMalformed(
                f"A v1 {SIGNATURE_HEADER} entry must be a base64 HMAC-SHA256.", param=SIGNATURE_HEADER
            )
        macs.append(mac)
    if not macs:
        raise WebhookSignatureInvalid(f"{SIGNATURE_HEADER} has no v1 signature.", param=SIGNATURE_HEADER)
    return macs


def _mac_of(signature: str) -> bytes:
    """The raw MAC of the library's `v1,<base64>` answer (compared decoded, as the library compares)."""
    return base64.b64decode(signature.partition(",")[2])
