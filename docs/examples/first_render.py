"""Your first hour, the SDK step: render a video through the gateway with the stock `openai` SDK.

Only `base_url` and `api_key` differ from calling OpenAI: `make run` serves the API on 127.0.0.1:8000 and
creates the dev caller with the key `vg-dev-key` (OPENAI_BASE_URL and OPENAI_API_KEY override both).
"""

from __future__ import annotations

import os
import sys
import warnings

import openai

# The SDK marks every videos method deprecated (OpenAI's own Videos API closed); the gateway speaks it on.
warnings.filterwarnings("ignore", category=DeprecationWarning)

client = openai.OpenAI(
    base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("OPENAI_API_KEY", "vg-dev-key"),
)
video = client.videos.create_and_poll(prompt="A lighthouse at dusk, waves below", seconds="4", poll_interval_ms=500)
print(f"{video.id}: {video.status}, {video.seconds} s at {video.size}")
if video.status != "completed":
    sys.exit(f"the render did not complete: {video.error}")
target = sys.argv[1] if len(sys.argv) > 1 else "first.mp4"
client.videos.download_content(video.id, variant="video").write_to_file(target)
print(f"saved {target} ({os.path.getsize(target)} bytes)")
