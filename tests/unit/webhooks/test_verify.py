"""The signature verifier, without I/O: known-answer vectors, every malformed header, the replay window."""

from __future__ import annotations

import ast
import base64
import hmac
import inspect
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from app.core.errors import WebhookMalformed, WebhookSignatureInvalid
from app.webhooks import verify
from app.webhooks.verify import TOLERANCE_SECONDS, SignedDelivery, Verifier, check_secrets
from tests.support.settings import TEST_WEBHOOK_SECRET

NOW = 1_750_000_000
BODY = b'{"id":"evt_1","object":"event","created_at":1750000000,"type":"video.completed","data":{"id":"video_1"}}'
OTHER_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()


def sign(body: bytes, *, webhook_id: str = "wh_1", timestamp: int = NOW, secret: str = TEST_WEBHOOK_SECRET) -> str:
    return Webhook(secret).sign(webhook_id, datetime.fromtimestamp(timestamp, tz=UTC), body.decode())


def headers(
    body: bytes = BODY, *, webhook_id: str = "wh_1", timestamp: int = NOW, secret: str = TEST_WEBHOOK_SECRET
) -> dict[str, str]:
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(body, webhook_id=webhook_id, timestamp=timestamp, secret=secret),
    }


def verifier(*secret_list: str, now: float = NOW) -> Verifier:
    return Verifier(list(secret_list or [TEST_WEBHOOK_SECRET]), clock=lambda: now)


class TestKnownAnswers:
    def test_standard_webhooks_vector_at_its_frozen_time(self) -> None:
        # Row 1: standard-webhooks libraries/python/tests/test_webhooks.py::test_sign_function.
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        body = b'{"test": 2432232314}'
        signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        assert (
            Webhook(secret).sign("msg_p5jXN8AQM9LWM0D4loKWxJek", datetime.fromtimestamp(1614265330, UTC), body.decode())
            == signature
        )
        delivery = Verifier([secret], clock=lambda: 1614265330).verify(
            body,
            {
                "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "webhook-timestamp": "1614265330",
                "webhook-signature": signature,
            },
        )
        assert delivery == SignedDelivery("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body.decode())

    def test_openai_sdk_vector_at_its_frozen_time(self) -> None:
        # docs/upstream-contract.md#test-vector: the openai SDK's own test vector, with its exact body bytes.
        body = (
            b'{"id": "evt_685c059ae3a481909bdc86819b066fb6", "object": "event", "created_at": 1750861210, '
            b'"type": "response.completed", "data": {"id": "resp_123"}}'
        )
        delivery = Verifier(["whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c="], clock=lambda: 1750861210).verify(
            body,
            {
                "webhook-id": "wh_685c059ae39c8190af8c71ed1022a24d",
                "webhook-timestamp": "1750861210",
                "webhook-signature": "v1,gUAg4R2hWouRZqRQG4uJypNS8YK885G838+EHb4nKBY=",
            },
        )
        assert delivery.webhook_id == "wh_685c059ae39c8190af8c71ed1022a24d"

    def test_the_vector_fails_one_second_past_the_window(self) -> None:
        with pytest.raises(WebhookSignatureInvalid):
            Verifier(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], clock=lambda: 1614265330 + 301).verify(
                b'{"test": 2432232314}',
                {
                    "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
                    "webhook-timestamp": "1614265330",
                    "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                },
            )

    def test_header_names_are_case_insensitive(self) -> None:
        mixed = {name.title(): value for name, value in headers().items()}
        assert verifier().verify(BODY, mixed).webhook_id == "wh_1"


class TestSecrets:
    # Row 2: unprefixed secrets mean different keys to the openai SDK and to standardwebhooks; we refuse them.
    @pytest.mark.parametrize(
        "secret_list",
        [
            pytest.param([], id="none"),
            pytest.param(["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], id="unprefixed"),
            pytest.param([TEST_WEBHOOK_SECRET, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], id="second-unprefixed"),
            pytest.param(["whsec_"], id="empty"),
            pytest.param(["whsec_not base64!"], id="not-base64"),
            pytest.param(["whsec_" + base64.b64encode(b"x" * 23).decode()], id="23-bytes"),
            pytest.param(["whsec_" + base64.b64encode(b"x" * 65).decode()], id="65-bytes"),
        ],
    )
    def test_unusable_secrets_are_refused_at_start(self, secret_list: list[str]) -> None:
        with pytest.raises(ValueError, match=r"webhook secret") as caught:
            check_secrets(secret_list)
        for secret in secret_list:
            if len(secret) > len("whsec_"):
                assert secret.removeprefix("whsec_") not in str(caught.value)

    def test_the_verifier_refuses_to_exist_without_a_usable_secret(self) -> None:
        with pytest.raises(ValueError, match="whsec_"):
            Verifier(["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])

    @pytest.mark.parametrize("size", [24, 32, 64])
    def test_24_to_64_byte_secrets_are_accepted(self, size: int) -> None:
        check_secrets(["whsec_" + base64.b64encode(secrets.token_bytes(size)).decode()])

    def test_unpadded_base64_is_accepted_as_the_library_accepts_it(self) -> None:
        padded = "whsec_" + base64.b64encode(b"k" * 32).decode()
        assert padded.endswith("=")
        check_secrets([padded.rstrip("=")])


class TestMissingHeaders:
    # Row 3: each header missing, and each present but empty.
    @pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp", "webhook-signature"])
    def test_a_missing_header_is_malformed(self, name: str) -> None:
        given = headers()
        del given[name]
        with pytest.raises(WebhookMalformed, match=f"Missing {name}") as caught:
            verifier().verify(BODY, given)
        assert caught.value.param == name

    @pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp", "webhook-signature"])
    def test_an_empty_header_is_malformed(self, name: str) -> None:
        with pytest.raises(WebhookMalformed):
            verifier().verify(BODY, {**headers(), name: ""})

    def test_a_repeated_header_is_malformed(self) -> None:
        # A Starlette Headers mapping yields repeated names from items(); a dict can only differ in case.
        given = {**headers(), "Webhook-Signature": sign(BODY)}
        with pytest.raises(WebhookMalformed, match="repeated"):
            verifier().verify(BODY, given)


class TestTimestamps:
    # Row 4. Decision: whole seconds only, in canonical form (the signed text is the header text).
    @pytest.mark.parametrize(
        "value",
        [
            "hello",
            "1.7e9",
            f"{NOW}.0",
            f"{NOW}.5",
            f"-{NOW}",
            f"+{NOW}",
            f"0{NOW}",
            f" {NOW}",
            f"{NOW} ",
            "1_750_000_000",
            "".join(chr(0x0660 + int(d)) for d in str(NOW)),  # Arabic-Indic digits: int() takes them
            str(2**64),
            "9" * 5000,  # int() refuses past 4300 digits with ValueError
        ],
    )
    def test_a_malformed_timestamp_is_refused_before_any_hmac(
        self, value: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        given = {**headers(), "webhook-timestamp": value}
        monkeypatch.setattr(Webhook, "sign", _forbidden_sign)
        with pytest.raises(WebhookMalformed) as caught:
            verifier().verify(BODY, given)
        assert caught.value.param == "webhook-timestamp"

    def test_a_fractional_timestamp_is_refused_even_when_its_floor_is_signed(self) -> None:
        # standardwebhooks would accept this: it parses float() and signs floor(value).
        with pytest.raises(WebhookMalformed):
            verifier().verify(BODY, {**headers(), "webhook-timestamp": f"{NOW}.0"})

    def test_zero_is_well_formed_but_far_too_old(self) -> None:
        with pytest.raises(WebhookMalformed):
            verifier().verify(BODY, {**headers(), "webhook-timestamp": "0"})

    # Rows 5 and 25: ±300 s, both directions, inclusive.
    @pytest.mark.parametrize("skew", [-300, -299, -240, 0, 240, 299, 300])
    def test_timestamps_within_five_minutes_either_way_verify(self, skew: int) -> None:
        assert verifier(now=NOW + skew).verify(BODY, headers()).timestamp == NOW

    @pytest.mark.parametrize(
        ("skew", "message"), [(301, "too old"), (360, "too old"), (-301, "too new"), (-360, "too new")]
    )
    def test_timestamps_past_five_minutes_either_way_are_refused(self, skew: int, message: str) -> None:
        with pytest.raises(WebhookSignatureInvalid, match=message):
            verifier(now=NOW + skew).verify(BODY, headers())

    def test_the_tolerance_is_a_constant_not_a_setting(self) -> None:
        assert TOLERANCE_SECONDS == 300
        assert not any("tolerance" in name for name in inspect.signature(Verifier).parameters)


class TestTampering:
    # Row 6: the signature covers the exact bytes.
    @pytest.mark.parametrize(
        "tampered",
        [
            pytest.param(BODY.replace(b"video_1", b"video_2"), id="flip-a-byte"),
            pytest.param(BODY.replace(b'"type":', b'"type": '), id="add-a-space"),
            pytest.param(BODY + b"\n", id="trailing-newline"),
            pytest.param(
                BODY.replace(b'"id":"evt_1","object":"event"', b'"object":"event","id":"evt_1"'), id="reorder"
            ),
            pytest.param(
                b'{"id": "evt_1", "object": "event", "created_at": 1750000000, "type": "video.completed", '
                b'"data": {"id": "video_1"}}',
                id="reserialised",
            ),
        ],
    )
    def test_a_changed_body_is_refused(self, tampered: bytes) -> None:
        assert tampered != BODY
        with pytest.raises(WebhookSignatureInvalid):
            verifier().verify(tampered, headers())

    def test_changed_line_endings_are_refused(self) -> None:
        body = b'{\n  "type": "video.completed",\n  "data": {"id": "video_1"}\n}'
        with pytest.raises(WebhookSignatureInvalid):
            verifier().verify(body.replace(b"\n", b"\r\n"), headers(body))

    # Row 7: id and timestamp are signed too.
    def test_a_changed_webhook_id_is_refused(self) -> None:
        with pytest.raises(WebhookSignatureInvalid):
            verifier().verify(BODY, {**headers(), "webhook-id": "wh_2"})

    def test_a_changed_timestamp_is_refused(self) -> None:
        with pytest.raises(WebhookSignatureInvalid):
            verifier().verify(BODY, {**headers(), "webhook-timestamp": str(NOW + 1)})

    # Row 8.
    def test_a_signature_from_another_secret_is_refused(self) -> None:
        with pytest.raises(WebhookSignatureInvalid, match="No webhook signature matches"):
            verifier().verify(BODY, headers(secret=OTHER_SECRET))

    def test_a_body_that_is_not_utf8_cannot_verify(self) -> None:
        # Row 12 (verifier side): both reference verifiers sign UTF-8 text; these bytes are refused as malformed.
        body = b'{"type": "video.completed", "data": {"id": "\xff"}}'
        signature = _raw_v1(TEST_WEBHOOK_SECRET, f"wh_1.{NOW}.".encode() + body)
        with pytest.raises(WebhookMalformed, match="UTF-8"):
            verifier().verify(body, {**headers(), "webhook-signature": signature})


class TestSignatureLists:
    # Row 9.
    def test_one_good_v1_among_bad_and_unknown_versions_verifies(self) -> None:
        good = sign(BODY)
        bad = sign(BODY, secret=OTHER_SECRET)
        header = f"{bad} v2,{good.partition(',')[2]} {good} {bad}"
        assert verifier().verify(BODY, {**headers(), "webhook-signature": header}).webhook_id == "wh_1"

    def test_tabs_separate_entries_as_in_the_openai_sdk(self) -> None:
        header = f"{sign(BODY, secret=OTHER_SECRET)}\t{sign(BODY)}"
        assert verifier().verify(BODY, {**headers(), "webhook-signature": header}).webhook_id == "wh_1"

    @pytest.mark.parametrize("version", ["v1a", "v0", "v2"])
    def test_only_other_versions_is_a_signature_failure(self, version: str) -> None:
        # Even the right MAC under another version label does not count.
        header = f"{version},{sign(BODY).partition(',')[2]}"
        with pytest.raises(WebhookSignatureInvalid, match="no v1"):
            verifier().verify(BODY, {**headers(), "webhook-signature": header})

    # Row 10: rotation.
    def test_during_a_rotation_both_secrets_verify(self) -> None:
        rotating = verifier(OTHER_SECRET, TEST_WEBHOOK_SECRET)
        assert rotating.verify(BODY, headers(secret=OTHER_SECRET)).webhook_id == "wh_1"
        assert rotating.verify(BODY, headers(secret=TEST_WEBHOOK_SECRET)).webhook_id == "wh_1"

    def test_after_a_rotation_the_old_secret_is_refused(self) -> None:
        with pytest.raises(WebhookSignatureInvalid):
            verifier(OTHER_SECRET).verify(BODY, headers(secret=TEST_WEBHOOK_SECRET))

    def test_a_sender_listing_both_signatures_verifies_under_either_secret(self) -> None:
        header = f"{sign(BODY, secret=OTHER_SECRET)} {sign(BODY)}"
        for secret in (OTHER_SECRET, TEST_WEBHOOK_SECRET):
            assert verifier(secret).verify(BODY, {**headers(), "webhook-signature": header}).timestamp == NOW

    # Row 11: every malformed list is a 400-class refusal, with no HMAC computed.
    @pytest.mark.parametrize(
        "header",
        [
            pytest.param("v1", id="no-comma"),
            pytest.param("garbage", id="garbage"),
            pytest.param("v1,a,b", id="two-commas"),
            pytest.param("v1,abc", id="bad-padding"),
            pytest.param("v1,", id="empty-value"),
            pytest.param(",abc", id="empty-version"),
            pytest.param("v1,not-base64!!", id="not-base64"),
            pytest.param("v1," + base64.b64encode(b"x" * 31).decode(), id="31-byte-mac"),
            pytest.param("v1," + base64.b64encode(b"x" * 32).decode().rstrip("="), id="unpadded"),
            pytest.param(" ", id="only-space"),
            pytest.param("v1,é" + "A" * 43, id="non-ascii"),
            pytest.param("v1,\x00AAAA", id="control-char"),
            pytest.param(" ".join(["v2,AAAA"] * 33), id="33-entries"),
            pytest.param(" ".join(["v1,AAAA"] * 10_000), id="10k-entries"),
            pytest.param("v1," + "A" * 1_000_000, id="1MB"),
        ],
    )
    def test_a_malformed_list_is_refused_without_computing_an_hmac(
        self, header: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        given = {**headers(), "webhook-signature": header}
        monkeypatch.setattr(Webhook, "sign", _forbidden_sign)
        with pytest.raises(WebhookMalformed) as caught:
            verifier().verify(BODY, given)
        assert caught.value.param == "webhook-signature"

    def test_a_malformed_entry_spoils_the_list_even_beside_a_good_one(self) -> None:
        with pytest.raises(WebhookMalformed):
            verifier().verify(BODY, {**headers(), "webhook-signature": f"{sign(BODY)} v1,a,b"})

    def test_a_header_over_4096_chars_is_refused_even_with_a_good_signature(self) -> None:
        padding = " ".join(["v2," + "A" * 400] * 12)
        header = f"{padding} {sign(BODY)}"
        assert len(header.split()) <= 32 and len(header) > 4096
        with pytest.raises(WebhookMalformed, match="at most 4096"):
            verifier().verify(BODY, {**headers(), "webhook-signature": header})

    def test_32_entries_are_still_checked(self) -> None:
        header = " ".join([sign(BODY, secret=OTHER_SECRET)] * 31 + [sign(BODY)])
        assert verifier().verify(BODY, {**headers(), "webhook-signature": header}).webhook_id == "wh_1"

    @pytest.mark.parametrize(
        "webhook_id",
        ["wh.1", "wh 1", "w" * 201, "wh_é", "wh_\x00"],
        ids=["dot", "space", "201-chars", "non-ascii", "control"],
    )
    def test_a_malformed_webhook_id_is_refused(self, webhook_id: str) -> None:
        with pytest.raises(WebhookMalformed) as caught:
            verifier().verify(BODY, {**headers(), "webhook-id": webhook_id})
        assert caught.value.param == "webhook-id"


class TestConstantTime:
    # Row 13: the behaviour (every match goes through compare_digest) and a lint on the source.
    def test_signatures_are_compared_with_compare_digest(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[tuple[bytes, bytes]] = []

        compare = hmac.compare_digest

        def spy(a: bytes, b: bytes) -> bool:
            calls.append((a, b))
            return compare(a, b)

        monkeypatch.setattr(hmac, "compare_digest", spy)  # verify.py calls it as hmac.compare_digest
        header = f"{sign(BODY, secret=OTHER_SECRET)} {sign(BODY)}"
        verifier().verify(BODY, {**headers(), "webhook-signature": header})
        assert len(calls) == 2
        assert all(len(a) == len(b) == 32 for a, b in calls)

    def test_no_equality_operator_touches_signature_or_key_material(self) -> None:
        sensitive = ("sig", "mac", "secret", "expected", "candidate", "digest", "key")
        source_dir = Path(verify.__file__).parent
        offenders = []
        for path in sorted(source_dir.glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Compare) and any(
                    isinstance(op, ast.Eq | ast.NotEq | ast.Is | ast.IsNot) for op in node.ops
                ):
                    # A call (`len(mac)`) compares a derived value, not the material itself.
                    operands = [o for o in (node.left, *node.comparators) if not isinstance(o, ast.Call)]
                    # Upper-case names are constants (sizes, prefixes), never secret material.
                    names = {
                        n.id.lower()
                        for o in operands
                        for n in ast.walk(o)
                        if isinstance(n, ast.Name) and not n.id.isupper()
                    }
                    if any(word in name for name in names for word in sensitive):
                        offenders.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
        assert not offenders, offenders


def _forbidden_sign(self: Webhook, msg_id: str, timestamp: datetime, data: str) -> str:
    raise AssertionError("an HMAC was computed for a delivery that should have been refused first")


def _raw_v1(secret: str, message: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return "v1," + base64.b64encode(hmac.digest(key, message, "sha256")).decode()
