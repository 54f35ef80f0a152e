"""Your first hour, the callback step: receive the gateway's signed `video.archived` callback and verify it.

Starts a tiny receiver on 127.0.0.1 (a free port), reads this caller's signing secret
(`GET /v1/callbacks/secret`), renders a video with `callback_url` pointing at the receiver, and waits for the
callback; its signature is checked with the `standardwebhooks` library, as any receiver should. Loopback
destinations are allowed in dev mode only (`make run`); in production the allow-list decides.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import warnings
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import openai
from standardwebhooks import Webhook

warnings.filterwarnings("ignore", category=DeprecationWarning)

BASE_URL = os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
API_KEY = os.environ.get("OPENAI_API_KEY", "vg-dev-key")
arrived: queue.Queue[tuple[bytes, dict[str, str]]] = queue.Queue()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        arrived.put((body, {name.lower(): value for name, value in self.headers.items()}))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


server = HTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=server.serve_forever, daemon=True).start()
callback_url = f"http://127.0.0.1:{server.server_port}/callbacks"

secret = httpx.get(f"{BASE_URL}/callbacks/secret", headers={"authorization": f"Bearer {API_KEY}"}).json()["secret"]
client = openai.OpenAI(base_url=BASE_URL, api_key=API_KEY)
video = client.videos.create(prompt="A red kite over a beach", seconds="4", extra_body={"callback_url": callback_url})
print(f"rendering {video.id}; callback to {callback_url}")
try:
    while True:
        body, headers = arrived.get(timeout=180)
        event = Webhook(secret).verify(body, headers)  # raises if the signature or timestamp is wrong
        print(f"{event['type']} for {event['data']['id']}: signature verified (webhook-id {headers['webhook-id']})")
        if event["type"] in ("video.archived", "video.failed") and event["data"]["id"] == video.id:
            break
except queue.Empty:
    sys.exit("no callback within 3 minutes: is the worker running? (.devstack/logs/worker.log)")
finally:
    server.shutdown()
