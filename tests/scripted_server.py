"""A small OpenAI-compatible HTTP server on 127.0.0.1 whose answers a test scripts: fixed reply texts,
an HTTP error with a body, or silence (accept the request, never answer). For the failure paths
that a real model server cannot be made to take on demand."""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def chat_completion(text: str, model: str) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


@contextlib.contextmanager
def scripted_server(*, replies: list[str] | None = None, status: int = 200, body: str = "", silent: bool = False):
    """Yield the base URL (``http://127.0.0.1:PORT``). Every POST gets the next of ``replies`` (cycled) as a
    chat completion; or ``status`` with ``body``; or, with ``silent``, nothing until the server stops."""
    released = threading.Event()
    cycle = itertools.cycle(replies or ["{}"])
    lock = threading.Lock()
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def _send(self, code: int, payload: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self):
            if silent:
                released.wait()
                return
            self._send(status if status != 200 else 200, body.encode() or b"{}")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            with lock:
                requests.append(request)
            if silent:
                released.wait()
                return
            if status != 200:
                self._send(status, body.encode())
                return
            with lock:
                text = next(cycle)
            self._send(200, json.dumps(chat_completion(text, request.get("model", "m"))).encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.requests = requests  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        server.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
        yield server
    finally:
        released.set()
        server.shutdown()
        server.server_close()


def refused_url() -> str:
    """A URL on a local port nothing listens on: connections are refused at once."""
    from tests.servers import free_port

    return f"http://127.0.0.1:{free_port()}"
