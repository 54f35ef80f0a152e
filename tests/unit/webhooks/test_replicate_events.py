"""Reading a verified Replicate delivery: the body is the prediction object; its `id` names the video to re-read
and its `status` makes the event type. Anything else is a 400, and only ended predictions are video events."""

from __future__ import annotations

import json

import pytest

from app.core.errors import WebhookMalformed
from app.webhooks.kinds import webhook_kind
from app.webhooks.replicate import REPLICATE_VIDEO_EVENTS, parse_replicate_event
from app.webhooks.schemas import DeliveredEvent
from app.webhooks.verify import SignedDelivery

PID = "gm3qorzdhgbfurvjtvhg6dckhu"


def parsed(payload: str, webhook_id: str = "msg_1") -> DeliveredEvent:
    return parse_replicate_event(SignedDelivery(webhook_id=webhook_id, timestamp=1, payload=payload))


def prediction(**fields: object) -> str:
    body: dict[str, object] = {
        "id": PID,
        "model": "google/veo-3",
        "status": "succeeded",
        "input": {"prompt": "a fox"},
        "output": "https://replicate.delivery/x/output.mp4",
        "error": None,
        **fields,
    }
    return json.dumps(body)


class TestParse:
    def test_a_prediction_is_an_event_about_that_prediction(self) -> None:
        payload = prediction()
        assert parsed(payload, "msg_abc") == DeliveredEvent(
            webhook_id="msg_abc", event_id=None, type="prediction.succeeded", object_id=PID, body=payload
        )

    @pytest.mark.parametrize("status", ["succeeded", "failed", "canceled"])
    def test_every_ending_is_a_video_event(self, status: str) -> None:
        assert parsed(prediction(status=status)).type in REPLICATE_VIDEO_EVENTS

    @pytest.mark.parametrize("status", ["starting", "processing", "some_new_status"])
    def test_a_prediction_still_running_is_parsed_but_is_not_a_video_event(self, status: str) -> None:
        event = parsed(prediction(status=status))
        assert event.type == f"prediction.{status}"
        assert event.type not in REPLICATE_VIDEO_EVENTS

    def test_the_body_is_kept_as_sent(self) -> None:
        payload = prediction(metrics={"predict_time": 1.5}, extra=[1, 2])
        assert parsed(payload).body == payload

    def test_the_kind_wires_this_parser(self) -> None:
        kind = webhook_kind("replicate")
        assert kind.parse is parse_replicate_event
        assert kind.video_events == REPLICATE_VIDEO_EVENTS
        assert kind.uses_secrets  # Standard Webhooks: the profile needs `whsec_` secrets

    @pytest.mark.parametrize(
        "payload",
        [
            pytest.param("", id="empty"),
            pytest.param("not json", id="not-json"),
            pytest.param("[]", id="array"),
            pytest.param("null", id="null"),
            pytest.param(prediction(id=None), id="id-null"),
            pytest.param(json.dumps({"status": "succeeded"}), id="no-id"),
            pytest.param(prediction(id=12), id="id-number"),
            pytest.param(prediction(id=""), id="id-empty"),
            pytest.param(prediction(id="../predictions/x"), id="id-path"),
            pytest.param(prediction(id="GM3QORZ"), id="id-upper-case"),
            pytest.param(prediction(id="a" * 201), id="id-too-long"),
            pytest.param(prediction(id="abc\u0000"), id="nul-in-id"),
            pytest.param(json.dumps({"id": PID}), id="no-status"),
            pytest.param(prediction(status=3), id="status-number"),
            pytest.param(prediction(status=""), id="status-empty"),
            pytest.param(prediction(status="succeeded; drop table"), id="status-not-a-word"),
            pytest.param(prediction(status="s" * 101), id="status-too-long"),
            pytest.param('{"type":"video.completed","data":{"id":"video_1"}}', id="openai-shape"),
            pytest.param('{"id":"' + PID + '","id":"other","status":"succeeded"}', id="duplicate-key"),
            pytest.param("[" * 70_000, id="deep-nesting"),
        ],
    )
    def test_anything_else_is_malformed(self, payload: str) -> None:
        with pytest.raises(WebhookMalformed):
            parsed(payload)
