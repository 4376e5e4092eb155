"""Serving an ASGI app with real uvicorn on a free 127.0.0.1 port, and talking HTTP to it with urllib."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urlsplit, urlunsplit

import uvicorn

START_TIMEOUT = 15.0


class Served:
    """`with Served(app) as base_url:` the app under uvicorn in a thread, stopped on exit."""

    def __init__(self, app, **config):
        self.app, self.config = app, config
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def __enter__(self) -> str:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning", **self.config)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [listener]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        assert self.server is not None and self.thread is not None
        self.server.should_exit = True
        self.thread.join(START_TIMEOUT)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Message
    text: str


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def fetch(url: str, method: str = "GET", data: bytes | None = None, headers: dict | None = None) -> Answer:
    """One request, redirects not followed, 4xx/5xx returned rather than raised."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _OPENER.open(request, timeout=30) as response:
            return Answer(response.status, response.headers, response.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers, error.read().decode("utf-8", "replace"))


def one_click(url: str) -> Answer:
    """What a mail client does for RFC 8058: POST List-Unsubscribe=One-Click to the header's URL."""
    return fetch(url, "POST", b"List-Unsubscribe=One-Click",
                 {"Content-Type": "application/x-www-form-urlencoded"})


def on_local_host(url: str, base_url: str) -> str:
    """The URL from a message with the scheme and host swapped for the local server's."""
    parts, local = urlsplit(url), urlsplit(base_url)
    return urlunsplit((local.scheme, local.netloc, parts.path, parts.query, ""))
