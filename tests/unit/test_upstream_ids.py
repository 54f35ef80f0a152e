"""`as_caller_text`: an upstream's id, in text a caller will read, becomes the caller's own video id."""

from __future__ import annotations

from app.upstream.ids import as_caller_text


class TestAsCallerText:
    def test_an_openai_contract_id_is_replaced(self) -> None:
        text = "Video with id 'video_abc123' not found."
        assert as_caller_text(text, upstream_id="video_abc123", video_id="video_ours") == (
            "Video with id 'video_ours' not found."
        )

    def test_a_gemini_operation_name_and_its_bare_id_are_replaced(self) -> None:
        name = "models/veo-3.1-generate-preview/operations/k3x9q2w7e1r4"
        ours = "video_" + "0" * 32
        assert as_caller_text(f"Operation {name} failed", upstream_id=name, video_id=ours) == f"Operation {ours} failed"
        assert as_caller_text("Operation k3x9q2w7e1r4 not found.", upstream_id=name, video_id=ours) == (
            f"Operation {ours} not found."
        )

    def test_other_text_is_untouched(self) -> None:
        assert as_caller_text("Rate limited.", upstream_id="video_abc", video_id="video_x") == "Rate limited."
        assert as_caller_text(None, upstream_id="video_abc", video_id="video_x") is None
        assert as_caller_text("video_abc", upstream_id=None, video_id="video_x") == "video_abc"
