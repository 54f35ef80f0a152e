"""The fal simulator's webhook signing keys: Ed25519 pairs made at start, and the JWKS that publishes them.

fal signs `"{request id}\\n{user id}\\n{timestamp}\\n{sha256 hex of the body}"` with Ed25519 and sends the
signature in hex; receivers find the public keys in a JWKS of OKP/Ed25519 entries (`x`: the raw 32-byte key,
base64url without padding). A rotation (`POST /_sim/rotate-key`) signs with a new key from then on and keeps
the previous one published, as a provider rotating keys would while deliveries signed with the old key are
still being retried.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# The user id fal puts in `X-Fal-Webhook-User-Id` (an account's id); fixed for the simulated account.
USER_ID = "sim-user-1"


def signed_message(request_id: str, user_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{request_id}\n{user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(kid=secrets.token_hex(8), private=Ed25519PrivateKey.generate())

    def jwk(self) -> dict[str, Any]:
        raw = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
        return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "use": "sig", "alg": "EdDSA"}


class SigningKeys:
    """The current key (signs) and the previous one (still published after a rotation)."""

    def __init__(self) -> None:
        self.current = SigningKey.generate()
        self.previous: SigningKey | None = None

    def rotate(self) -> SigningKey:
        self.previous, self.current = self.current, SigningKey.generate()
        return self.current

    def jwks(self) -> dict[str, Any]:
        keys = [self.current] + ([self.previous] if self.previous is not None else [])
        return {"keys": [key.jwk() for key in keys]}

    def headers(self, request_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        """fal's four webhook headers for one attempt."""
        signature = self.current.private.sign(signed_message(request_id, USER_ID, timestamp, body))
        return {
            "x-fal-webhook-request-id": request_id,
            "x-fal-webhook-user-id": USER_ID,
            "x-fal-webhook-timestamp": str(timestamp),
            "x-fal-webhook-signature": signature.hex(),
        }
