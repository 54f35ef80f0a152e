"""Parsing a verified body into an event: anything but a JSON object with string `type` and `data.id` is a 400."""

from __future__ import annotations

import pytest

from app.core.errors import WebhookMalformed
from app.webhooks.schemas import EVENT_PARSERS, DeliveredEvent, parse_event, parse_gemini_event
from app.webhooks.verify import SignedDelivery


def parsed(payload: str) -> DeliveredEvent:
    return parse_event(SignedDelivery(webhook_id="wh_1", timestamp=1, payload=payload))


class TestParseEvent:
    def test_a_video_event_is_parsed(self) -> None:
        payload = '{"id":"evt_1","object":"event","created_at":1,"type":"video.completed","data":{"id":"video_9"}}'
        assert parsed(payload) == DeliveredEvent(
            webhook_id="wh_1", event_id="evt_1", type="video.completed", object_id="video_9", body=payload
        )

    def test_the_event_id_is_optional(self) -> None:
        assert parsed('{"type":"video.failed","data":{"id":"video_9"}}').event_id is None

    def test_unknown_fields_are_kept_in_the_body_and_otherwise_ignored(self) -> None:
        payload = '{"type":"video.failed","data":{"id":"v","extra":[1,2]},"new":true}'
        assert parsed(payload).body == payload

    @pytest.mark.parametrize(
        "payload",
        [
            pytest.param("", id="empty"),
            pytest.param("not json", id="not-json"),
            pytest.param("[]", id="array"),
            pytest.param('"video.completed"', id="string"),
            pytest.param("null", id="null"),
            pytest.param('{"data":{"id":"v"}}', id="no-type"),
            pytest.param('{"type":7,"data":{"id":"v"}}', id="type-not-string"),
            pytest.param('{"type":"","data":{"id":"v"}}', id="type-empty"),
            pytest.param('{"type":"video.completed"}', id="no-data"),
            pytest.param('{"type":"video.completed","data":"v"}', id="data-not-object"),
            pytest.param('{"type":"video.completed","data":{}}', id="no-data-id"),
            pytest.param('{"type":"video.completed","data":{"id":null}}', id="data-id-null"),
            pytest.param('{"type":"video.completed","data":{"id":["v"]}}', id="data-id-list"),
            pytest.param('{"id":5,"type":"video.completed","data":{"id":"v"}}', id="event-id-not-string"),
            pytest.param('{"type":"video.completed","data":{"id":"v\\u0000"}}', id="nul-in-id"),
            pytest.param('{"type":"video.completed","data":{"id":"\\ud800"}}', id="lone-surrogate"),
            pytest.param('{"type":"' + "t" * 101 + '","data":{"id":"v"}}', id="type-too-long"),
            pytest.param('{"type":"video.completed","data":{"id":"' + "v" * 201 + '"}}', id="id-too-long"),
            pytest.param("[" * 70_000, id="deep-nesting"),
            pytest.param('{"type":"x","data":{"id":"v"},"n":' + "9" * 5000 + "}", id="huge-integer"),
            pytest.param('\ufeff{"type":"x","data":{"id":"v"}}', id="bom"),
        ],
    )
    def test_anything_else_is_malformed(self, payload: str) -> None:
        with pytest.raises(WebhookMalformed):
            parsed(payload)


class TestParseGeminiEvent:
    """Google documents `{"type": "video.generated", "data": {"video_uri": …}}` and nothing more."""

    @staticmethod
    def gemini(payload: str) -> DeliveredEvent:
        return parse_gemini_event(SignedDelivery(webhook_id="wh_g", timestamp=1, payload=payload))

    def test_the_documented_event_names_no_video_it_is_a_hint(self) -> None:
        payload = '{"type":"video.generated","data":{"video_uri":"https://g/v1beta/files/a:download"}}'
        event = self.gemini(payload)
        assert (event.type, event.object_id, event.event_id, event.body) == ("video.generated", None, None, payload)

    def test_an_operation_name_in_the_data_is_used_to_match(self) -> None:
        event = self.gemini('{"type":"video.generated","data":{"name":"models/m/operations/o1"}}')
        assert event.object_id == "models/m/operations/o1"

    @pytest.mark.parametrize(
        "payload",
        [
            '{"type":"video.generated"}',
            '{"type":"video.generated","data":[]}',
            '{"type":7,"data":{}}',
            '{"type":"video.generated","data":{"name":"a\\u0000b"}}',
            "[",
        ],
    )
    def test_anything_else_is_malformed(self, payload: str) -> None:
        with pytest.raises(WebhookMalformed):
            self.gemini(payload)

    def test_each_kind_has_its_parser_and_its_video_events(self) -> None:
        assert EVENT_PARSERS["gemini"] == (parse_gemini_event, frozenset({"video.generated"}))
        assert EVENT_PARSERS["openai"][1] == frozenset({"video.completed", "video.failed"})
