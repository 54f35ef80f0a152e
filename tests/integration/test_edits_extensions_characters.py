"""Edits, extensions and characters through the facade: gateway → OpenAI-contract simulator, real Postgres.

Each edit or extension is a video of its own (ids, ownership, limits, provenance); the referenced video must
be the caller's and completed; an uploaded source is checked to be a real MP4 before anything goes upstream.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.test_videos_api import VIDEO_FIELDS, create, wait_until_terminal
from tests.support.transports import CountingTransport
from tests.support.videos import mp4_bytes


async def completed(api: httpx.AsyncClient, **fields: str) -> dict[str, Any]:
    video = await create(api, **fields)
    done = await wait_until_terminal(api, video["id"])
    assert done["status"] == "completed", done
    return done


def upload(seconds: float = 1.0) -> tuple[str, bytes, str]:
    return ("source.mp4", mp4_bytes(seconds=seconds), "video/mp4")


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


class TestEdits:
    async def test_an_edit_of_a_completed_video_by_json_id_is_a_new_video_with_its_provenance(
        self, api: httpx.AsyncClient
    ) -> None:
        source = await completed(api, size="1280x720", seconds="8")
        response = await api.post("/v1/videos/edits", json={"prompt": "make it snow", "video": {"id": source["id"]}})
        assert response.status_code == 200, response.text
        edit = response.json()
        assert set(edit) == VIDEO_FIELDS
        assert edit["id"].startswith("video_") and edit["id"] != source["id"]
        assert (edit["model"], edit["size"], edit["seconds"], edit["prompt"]) == (
            "sora-2",
            "1280x720",
            "8",
            "make it snow",
        )
        # The contract's field names a remix's source only; the edit's is our extension on retrieve.
        assert edit["remixed_from_video_id"] is None
        done = await wait_until_terminal(api, edit["id"])
        assert done["status"] == "completed"
        assert (done["origin"], done["source_video_id"]) == ("edit", source["id"])
        content = await api.get(f"/v1/videos/{edit['id']}/content")
        assert content.status_code == 200 and content.content[4:8] == b"ftyp"

    async def test_the_sdk_form_video_id_field_in_multipart_is_taken(self, api: httpx.AsyncClient) -> None:
        source = await completed(api)
        response = await api.post(
            "/v1/videos/edits", files={"prompt": (None, "sepia"), "video[id]": (None, source["id"])}
        )
        assert response.status_code == 200, response.text
        assert (await wait_until_terminal(api, response.json()["id"]))["source_video_id"] == source["id"]

    async def test_an_edit_of_an_uploaded_mp4_takes_its_size_and_length(self, api: httpx.AsyncClient) -> None:
        response = await api.post(
            "/v1/videos/edits", files={"prompt": (None, "add rain"), "video": upload(seconds=2.0)}
        )
        assert response.status_code == 200, response.text
        edit = response.json()
        assert (edit["size"], edit["seconds"], edit["model"]) == ("320x180", "2", "sora-2")
        done = await wait_until_terminal(api, edit["id"])
        assert done["status"] == "completed", done
        assert (done["origin"], done["source_video_id"]) == ("edit", None)

    async def test_a_video_that_has_not_completed_is_400_video_not_ready(self, api: httpx.AsyncClient) -> None:
        source = await create(api)
        response = await api.post("/v1/videos/edits", json={"prompt": "x", "video": {"id": source["id"]}})
        assert response.status_code == 400
        assert error_of(response)["code"] == "video_not_ready"

    async def test_model_with_a_referenced_video_is_refused(self, api: httpx.AsyncClient) -> None:
        source = await completed(api)
        response = await api.post(
            "/v1/videos/edits", json={"prompt": "x", "model": "sora-2-pro", "video": {"id": source["id"]}}
        )
        assert response.status_code == 400
        assert error_of(response)["param"] == "model"

    @pytest.mark.parametrize(
        ("files", "status", "param"),
        [
            ({"prompt": (None, "x")}, 400, "video"),
            ({"video[id]": (None, "video_abc")}, 400, "prompt"),
            ({"prompt": (None, "x"), "video": ("a.mp4", b"GIF89a not a video", "video/mp4")}, 415, "video"),
            (
                {"prompt": (None, "x"), "video": ("a.mp4", b"\0\0\0\x18ftypisom" + b"\0" * 64, "video/mp4")},
                422,
                "video",
            ),
            ({"prompt": (None, "x"), "video[id]": (None, "video_a"), "colour": (None, "red")}, 400, "colour"),
            ({"prompt": (None, "x"), "video[id]": (None, "bad id!")}, 400, "video.id"),
        ],
    )
    async def test_bad_requests_are_refused_before_upstream(
        self,
        api: httpx.AsyncClient,
        upstream_transport: CountingTransport,
        files: dict[str, Any],
        status: int,
        param: str,
    ) -> None:
        before = upstream_transport.count("POST", "/v1/videos/edits")
        response = await api.post("/v1/videos/edits", files=files)
        assert response.status_code == status, response.text
        assert error_of(response)["param"] == param
        assert upstream_transport.count("POST", "/v1/videos/edits") == before


class TestExtensions:
    async def test_an_extension_is_the_stitched_total_and_bills_only_the_new_segment(
        self, api: httpx.AsyncClient
    ) -> None:
        source = await completed(api, seconds="4")
        response = await api.post(
            "/v1/videos/extensions",
            files={"prompt": (None, "and then it flies"), "seconds": (None, "8"), "video[id]": (None, source["id"])},
        )
        assert response.status_code == 200, response.text
        extension = response.json()
        assert extension["seconds"] == "12"
        done = await wait_until_terminal(api, extension["id"])
        assert done["status"] == "completed", done
        assert (done["origin"], done["source_video_id"], done["seconds"]) == ("extension", source["id"], "12")
        usage = (await api.get("/v1/usage")).json()
        # 4 s for the source, 8 s for the extension's new segment: not 4 + 12.
        assert usage["totals"]["seconds"] == 12

    async def test_a_length_the_model_cannot_add_is_400_listing_the_lengths(self, api: httpx.AsyncClient) -> None:
        source = await completed(api)
        response = await api.post(
            "/v1/videos/extensions", json={"prompt": "x", "seconds": "6", "video": {"id": source["id"]}}
        )
        assert response.status_code == 400
        error = error_of(response)
        assert error["param"] == "seconds" and "'20'" in error["message"]

    async def test_seconds_is_required(self, api: httpx.AsyncClient) -> None:
        source = await completed(api)
        response = await api.post("/v1/videos/extensions", json={"prompt": "x", "video": {"id": source["id"]}})
        assert response.status_code == 400
        assert error_of(response)["param"] == "seconds"


class TestOwnership:
    async def test_another_callers_video_is_the_unknown_id_404(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        source = await completed(api)
        for path, extra in (("/v1/videos/edits", {}), ("/v1/videos/extensions", {"seconds": "4"})):
            stolen = await other_api.post(path, json={"prompt": "x", "video": {"id": source["id"]}, **extra})
            unknown = await other_api.post(path, json={"prompt": "x", "video": {"id": "video_nope"}, **extra})
            assert stolen.status_code == unknown.status_code == 404
            assert error_of(stolen)["code"] == error_of(unknown)["code"] == "not_found"

    async def test_characters_belong_to_their_caller(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        response = await api.post("/v1/videos/characters", files={"name": (None, "Mossy"), "video": upload()})
        assert response.status_code == 200, response.text
        character = response.json()
        assert set(character) == {"id", "name", "created_at"}
        assert character["id"].startswith("char_") and character["name"] == "Mossy"
        assert (await api.get(f"/v1/videos/characters/{character['id']}")).json() == character
        theirs = await other_api.get(f"/v1/videos/characters/{character['id']}")
        unknown = await other_api.get("/v1/videos/characters/char_nope")
        assert theirs.status_code == unknown.status_code == 404
        assert error_of(theirs)["code"] == error_of(unknown)["code"] == "not_found"


class TestCharacters:
    @pytest.mark.parametrize(
        ("files", "status", "param"),
        [
            ({"video": upload()}, 400, "name"),
            ({"name": (None, "x" * 81), "video": upload()}, 400, "name"),
            ({"name": (None, "Mossy")}, 400, "video"),
            (
                {"name": (None, "Mossy"), "video": ("a.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 32, "image/png")},
                415,
                "video",
            ),
        ],
    )
    async def test_bad_requests_are_refused(
        self, api: httpx.AsyncClient, files: dict[str, Any], status: int, param: str
    ) -> None:
        response = await api.post("/v1/videos/characters", files=files)
        assert response.status_code == status, response.text
        assert error_of(response)["param"] == param

    async def test_json_is_415_naming_multipart(self, api: httpx.AsyncClient) -> None:
        response = await api.post("/v1/videos/characters", json={"name": "Mossy"})
        assert response.status_code == 415
        assert "multipart/form-data" in error_of(response)["message"]


class TestIdempotency:
    async def test_a_retried_upload_edit_under_one_key_is_one_render(
        self, api: httpx.AsyncClient, upstream_transport: CountingTransport
    ) -> None:
        clip = upload()
        headers = {"Idempotency-Key": f"edit-{id(clip)}"}
        before = upstream_transport.count("POST", "/v1/videos/edits")
        # Two attempts, each a new multipart boundary, as the SDK's retries are.
        first = await api.post("/v1/videos/edits", files={"prompt": (None, "p"), "video": clip}, headers=headers)
        again = await api.post("/v1/videos/edits", files={"prompt": (None, "p"), "video": clip}, headers=headers)
        assert first.status_code == again.status_code == 200, (first.text, again.text)
        assert first.json()["id"] == again.json()["id"]
        assert again.headers["idempotent-replayed"] == "true"
        assert upstream_transport.count("POST", "/v1/videos/edits") == before + 1

    async def test_a_character_under_one_key_is_made_once(
        self, api: httpx.AsyncClient, upstream_transport: CountingTransport
    ) -> None:
        clip = upload()
        headers = {"Idempotency-Key": f"char-{id(clip)}"}
        before = upstream_transport.count("POST", "/v1/videos/characters")
        answers = [
            await api.post("/v1/videos/characters", files={"name": (None, "Fern"), "video": clip}, headers=headers)
            for _ in range(2)
        ]
        assert [answer.json()["id"] for answer in answers] == [answers[0].json()["id"]] * 2
        assert upstream_transport.count("POST", "/v1/videos/characters") == before + 1
