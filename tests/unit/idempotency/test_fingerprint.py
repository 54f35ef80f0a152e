"""What counts as "the same request" for an Idempotency-Key, the key header's syntax, and what is kept."""

from __future__ import annotations

import httpx
import pytest

from app.idempotency.fingerprint import InvalidKey, parse_key, request_fingerprint
from app.idempotency.service import keeps_answer

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


def multipart(fields: dict[str, str], *, boundary: str, image: bytes | None = None) -> tuple[str, bytes]:
    """A multipart body as httpx (the SDK's transport) encodes it, with a boundary of our choosing."""
    files: dict[str, tuple[str | None, str | bytes, str | None]] = {
        name: (None, value, None) for name, value in fields.items()
    }
    if image is not None:
        files["input_reference"] = ("reference.png", image, "image/png")
    request = httpx.Request(
        "POST",
        "http://gateway.test/v1/videos",
        files=files,
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    return request.headers["content-type"], request.read()


def fingerprint(content_type: str | None, body: bytes, *, path: str = "/v1/videos", method: str = "POST") -> str:
    return request_fingerprint(method=method, path=path, query_string=b"", content_type=content_type, body=body)


FIELDS = {"prompt": "a paper boat", "seconds": "4", "size": "1280x720"}


class TestMultipart:
    def test_the_same_fields_under_another_boundary_are_the_same_request(self) -> None:
        first_type, first = multipart(FIELDS, boundary="a1b2c3", image=PNG_BYTES)
        second_type, second = multipart(FIELDS, boundary="zz9988", image=PNG_BYTES)
        assert first != second  # the bytes differ ...
        assert fingerprint(first_type, first) == fingerprint(second_type, second)  # ... the request does not

    def test_field_order_does_not_matter(self) -> None:
        content_type, body = multipart(FIELDS, boundary="x1")
        reordered_type, reordered = multipart(dict(reversed(FIELDS.items())), boundary="x1")
        assert fingerprint(content_type, body) == fingerprint(reordered_type, reordered)

    @pytest.mark.parametrize(
        ("fields", "image"),
        [
            ({**FIELDS, "prompt": "a paper plane"}, PNG_BYTES),
            ({**FIELDS, "seconds": "8"}, PNG_BYTES),
            ({**FIELDS, "model": "sora-2-pro"}, PNG_BYTES),
            (FIELDS, PNG_BYTES[:-1] + b"\x00"),
            (FIELDS, None),
        ],
    )
    def test_any_other_value_or_file_is_another_request(self, fields: dict[str, str], image: bytes | None) -> None:
        content_type, body = multipart(FIELDS, boundary="b1", image=PNG_BYTES)
        other_type, other = multipart(fields, boundary="b1", image=image)
        assert fingerprint(content_type, body) != fingerprint(other_type, other)

    def test_a_file_part_differs_from_a_field_with_the_same_bytes(self) -> None:
        as_field = httpx.Request("POST", "http://x/", files={"prompt": (None, b"abc", None)})
        as_file = httpx.Request("POST", "http://x/", files={"prompt": ("p.txt", b"abc", "text/plain")})
        assert fingerprint(as_field.headers["content-type"], as_field.read()) != fingerprint(
            as_file.headers["content-type"], as_file.read()
        )

    def test_a_body_that_is_not_multipart_falls_back_to_its_bytes(self) -> None:
        content_type = "multipart/form-data; boundary=nope"
        assert fingerprint(content_type, b"garbage") == fingerprint(content_type, b"garbage")
        assert fingerprint(content_type, b"garbage") != fingerprint(content_type, b"garbagE")


class TestJsonAndEnvelope:
    def test_json_is_compared_in_canonical_form(self) -> None:
        assert fingerprint("application/json", b'{"prompt": "x", "seconds": "4"}') == fingerprint(
            "application/json; charset=utf-8", b'{"seconds":"4","prompt":"x"}'
        )
        assert fingerprint("application/json", b'{"prompt": "x"}') != fingerprint(
            "application/json", b'{"prompt": "y"}'
        )

    def test_path_method_and_media_type_are_part_of_the_request(self) -> None:
        body = b'{"prompt": "x"}'
        base = fingerprint("application/json", body)
        assert base != fingerprint("application/json", body, path="/v1/videos/video_1/remix")
        assert base != fingerprint("application/json", body, method="PUT")
        assert base != fingerprint("text/plain", body)


class TestKeyHeader:
    @pytest.mark.parametrize(
        ("raw", "key"),
        [
            (b"8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324"),
            (b'"8e03978e-40d5"', "8e03978e-40d5"),  # the draft's sf-string form
            (b'"with \\"quote\\" and space"', 'with "quote" and space'),
            (b"  padded\t", "padded"),
            (b"k" * 255, "k" * 255),
        ],
    )
    def test_accepted(self, raw: bytes, key: str) -> None:
        assert parse_key([raw]) == key

    @pytest.mark.parametrize("raw", [b"", b'""', b"k" * 256, b"caf\xc3\xa9", b'"open', b'"a"b"', b"a\x01b"])
    def test_refused(self, raw: bytes) -> None:
        with pytest.raises(InvalidKey):
            parse_key([raw])

    def test_two_headers_are_refused(self) -> None:
        with pytest.raises(InvalidKey):
            parse_key([b"a", b"b"])


@pytest.mark.parametrize(
    ("status", "kept"),
    [(200, True), (201, True), (400, False), (404, False), (413, False), (429, False), (500, True), (502, True),
     (503, False), (504, True)],
)  # fmt: skip
def test_which_answers_are_kept_for_repeats(status: int, kept: bool) -> None:
    assert keeps_answer(status) is kept
