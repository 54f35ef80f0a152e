"""The reference an adapter puts in the callback URL it gives upstream (app/upstream/reference.py): it reads back
to the video it was made for, under the same profile key only, and nothing else reads as one."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from app.upstream.reference import PARAM, SubmissionReferences

VIDEO = "video_0123456789abcdef0123456789abcdef"


def references(key: str = "profile-key") -> SubmissionReferences:
    return SubmissionReferences(SecretStr(key))


def test_a_reference_reads_back_to_its_video_under_the_same_key_only() -> None:
    made = references().make(VIDEO)
    assert references().video_id_of(made) == VIDEO
    assert references("the next key").video_id_of(made) is None
    assert references().make(VIDEO) == made  # no state: another process of the gateway reads it too


@pytest.mark.parametrize(
    "change",
    [
        lambda made: made.replace(VIDEO, "video_0123456789abcdef0123456789abcdee"),  # another video, same tag
        lambda made: made[:-1] + ("A" if made[-1] != "A" else "B"),  # the tag altered
        lambda made: made.split(".")[0],  # no tag
        lambda made: made + "." + made,
        lambda made: "../" + made,
        lambda made: made + "x" * 200,
        lambda made: "",
    ],
)
def test_anything_but_the_reference_as_made_names_no_video(change: object) -> None:
    made = references().make(VIDEO)
    assert callable(change)
    assert references().video_id_of(change(made)) is None


def test_the_callback_url_keeps_its_own_query_and_adds_the_reference() -> None:
    url = httpx.URL(references().callback_url("https://gw.test/webhooks/seedance?profile=a%20b", VIDEO))
    assert (url.host, url.path, url.params["profile"]) == ("gw.test", "/webhooks/seedance", "a b")
    assert references().video_id_of(url.params[PARAM]) == VIDEO


def test_without_a_video_id_the_url_is_left_as_configured() -> None:
    assert references().callback_url("https://gw.test/webhooks/fal", None) == "https://gw.test/webhooks/fal"
