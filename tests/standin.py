"""A real local HTTP server standing in for a gateway's API or a merchant's endpoint.

Runs in a thread (stdlib ``ThreadingHTTPServer``), records every request and
answers through a function the test sets, so the code under test makes real
HTTP calls over a socket.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)


Responder = Callable[[Request], Reply]


@dataclass
class StandIn:
    url: str
    requests: list[Request]
    respond: Responder


@contextmanager
def serve(respond: Responder) -> Iterator[StandIn]:
    """``with serve(lambda request: Reply(200, {...})) as standin:`` then call ``standin.url``."""
    requests: list[Request] = []
    holder: dict[str, Responder] = {}

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            requests.append(request)
            reply = holder["respond"](request)
            payload = reply.body
            content_type = "application/json"
            if isinstance(payload, dict | list):
                payload = json.dumps(payload).encode()
            else:
                content_type = reply.headers.get("content-type", "text/plain")
            self.send_response(reply.status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(payload)))
            for name, value in reply.headers.items():
                if name.lower() != "content-type":
                    self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    standin = StandIn(f"http://127.0.0.1:{server.server_address[1]}", requests, respond)
    holder["respond"] = lambda request: standin.respond(request)
    try:
        yield standin
    finally:
        server.shutdown()
        server.server_close()
