"""The editor's live preview (`campaign preview --serve`): a local page, never the readers' service.

A separate Starlette app, served by uvicorn on 127.0.0.1 only. Routes:

- `GET /`          the page: the email in a frame (375/600 px), the checks and the text part beside it
- `GET /email`     the email, filled for the sample recipient or `?as=ADDRESS` from the recipients file
- `GET /panel`     the checks, subject and text part (the page swaps it in after each change)
- `GET /events`    Server-Sent Events: `render` after every new render; ends when the server stops
- `GET /images/N`  a picture of the issue's images/ folder

Everything is read-only: no route changes anything. The issue is rendered once per
change of its files (campaign.live), and each request only fills that render.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Callable
from urllib.parse import urlencode

import uvicorn
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ..audience import find_recipient
from ..checks import ERROR
from ..config import Settings
from ..content import issue_folder
from ..errors import CampaignError, UsageError
from ..live import LiveIssue, Snapshot
from ..merge import escape_header, escape_html, escape_text
from ..personalize import Envelope, envelope_for, sample_envelope
from .editor_page import templates

HOST = "127.0.0.1"
HEARTBEAT = 15.0                  # seconds between keep-alive comments on an idle event stream
STREAM_SECONDS = 300.0            # an event stream ends after this; the browser reconnects by itself
MAX_STREAMS = 16                  # open event streams at once (a few tabs is plenty)
MAX_ADDRESS = 320
MAX_CACHED = 32                   # recipients looked up and kept (per render and address)
PICTURE_NAME = re.compile(r"[A-Za-z0-9][\w.-]*")
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                  "Cache-Control": "no-store"}
EMAIL_POLICY = ("default-src 'none'; img-src 'self' https: data:; style-src 'unsafe-inline'; "
                "base-uri 'none'; form-action 'none'; frame-ancestors 'self'")


@dataclass(frozen=True)
class Preview:
    """One request's view of the snapshot: who it is filled for, and why not someone else."""

    snapshot: Snapshot
    envelope: Envelope | None
    as_email: str
    recipient_error: str

    @property
    def query(self) -> str:
        return "?" + urlencode({"as": self.as_email}) if self.as_email else ""


def editor_app(live: LiveIssue) -> Starlette:
    """The editor's app around one LiveIssue; tests build their own."""
    routes = [Route("/", page), Route("/panel", panel), Route("/email", email), Route("/events", events),
              Route("/images/{name}", picture), Route("/favicon.ico", no_icon)]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        watcher = asyncio.create_task(live.watch())
        try:
            yield
        finally:
            live.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(watcher, timeout=5)

    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=[HOST, "localhost"])])
    app.state.live = live
    app.state.streams = {"open": 0}
    app.state.recipients = {}
    return app


async def preview_for(request: Request) -> Preview:
    """The current snapshot, filled for the sample recipient or the one `?as=` names."""
    live: LiveIssue = request.app.state.live
    snapshot = live.snapshot
    as_email = request.query_params.get("as", "").strip()[:MAX_ADDRESS]
    if snapshot.settings is None or snapshot.rendered is None:
        return Preview(snapshot, None, as_email, "")
    if not as_email:
        return Preview(snapshot, sample_envelope(snapshot.settings, snapshot.number), "", "")
    settings = snapshot.settings
    try:
        stamp = settings.recipients.stat().st_mtime_ns
    except OSError:
        stamp = 0
    key = (snapshot.version, as_email.lower(), stamp)
    found: dict = request.app.state.recipients  # the recipients file is read once per render and address
    if key not in found:
        if len(found) >= MAX_CACHED:
            found.clear()
        found[key] = await asyncio.to_thread(recipient_or_problem, settings, snapshot.number, as_email)
    envelope, problem = found[key]
    return Preview(snapshot, envelope, as_email, problem)


def recipient_or_problem(settings: Settings, number: int, as_email: str) -> tuple[Envelope, str]:
    """The envelope of one person of the recipients file, or the sample one and why not."""
    try:
        return envelope_for(find_recipient(settings, as_email), settings, number), ""
    except CampaignError as error:
        return sample_envelope(settings, number), str(error).replace(f"{settings.root}/", "")


async def page(request: Request) -> Response:
    preview = await preview_for(request)
    nonce = secrets.token_urlsafe(16)
    width = 375 if request.query_params.get("width") == "375" else 600
    body = templates.get_template("page.html").render(
        number=preview.snapshot.number, nonce=nonce, width=width, query=preview.query,
        as_email=preview.as_email, panel=Markup(panel_html(preview)))
    policy = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
              "img-src 'self'; connect-src 'self'; frame-src 'self'; form-action 'self'; "
              "base-uri 'none'; frame-ancestors 'none'")
    return HTMLResponse(body, headers={**COMMON_HEADERS, "Content-Security-Policy": policy})


async def panel(request: Request) -> Response:
    return HTMLResponse(panel_html(await preview_for(request)), headers=COMMON_HEADERS)


async def email(request: Request) -> Response:
    preview = await preview_for(request)
    snapshot = preview.snapshot
    if snapshot.email is None or preview.envelope is None:
        body = templates.get_template("error.html").render(error=snapshot.error or "no render yet")
    else:
        body = add_base_target(snapshot.email.fill(preview.envelope.fields, escape_html))
    return HTMLResponse(body, headers={**COMMON_HEADERS, "Content-Security-Policy": EMAIL_POLICY,
                                       "X-Frame-Options": "SAMEORIGIN"})


async def picture(request: Request) -> Response:
    """A file of the issue's images/ folder, by a plain name (no path)."""
    live: LiveIssue = request.app.state.live
    name, settings = request.path_params["name"], live.snapshot.settings
    if settings is None or not PICTURE_NAME.fullmatch(name):
        return PlainTextResponse("not found", status_code=404, headers=COMMON_HEADERS)
    folder = (issue_folder(settings.content_dir, live.number) / "images").resolve()
    path = (folder / name).resolve()
    if path.parent != folder or not path.is_file():
        return PlainTextResponse("not found", status_code=404, headers=COMMON_HEADERS)
    return FileResponse(path, headers={**COMMON_HEADERS, "Content-Security-Policy": "default-src 'none'"})


async def no_icon(_request: Request) -> Response:
    return Response(status_code=204, headers=COMMON_HEADERS)


async def events(request: Request) -> Response:
    streams: dict[str, int] = request.app.state.streams
    if streams["open"] >= MAX_STREAMS:
        return PlainTextResponse("too many open previews", status_code=503, headers=COMMON_HEADERS)
    return StreamingResponse(event_stream(request.app.state.live, streams), media_type="text/event-stream",
                             headers={**COMMON_HEADERS, "X-Accel-Buffering": "no"})


def panel_html(preview: Preview) -> str:
    snapshot = preview.snapshot
    subject = text = recipient = ""
    if snapshot.rendered is not None and preview.envelope is not None:
        fields = preview.envelope.fields
        subject = snapshot.rendered.subject.fill(fields, escape_header)
        text = snapshot.rendered.text.fill(fields, escape_text)
        recipient = f"{preview.envelope.name} <{preview.envelope.email}>"
    findings = [(finding, snapshot.anchor_for(finding)) for finding in snapshot.findings]
    errors = sum(1 for finding in snapshot.findings if finding.severity == ERROR)
    return templates.get_template("panel.html").render(
        snapshot=snapshot, findings=findings, errors=errors, warnings=len(findings) - errors, subject=subject,
        text=text, recipient=recipient, query=preview.query, recipient_error=preview.recipient_error)


def add_base_target(document: str) -> str:
    """Links clicked in the preview open a new tab instead of replacing the frame."""
    return re.sub(r"(<head\b[^>]*>)", r'\1<base target="_blank">', document, count=1, flags=re.IGNORECASE)


async def event_stream(live: LiveIssue, streams: dict[str, int]) -> AsyncIterator[str]:
    """`render` events as the issue changes, keep-alives in between; ends at stop or after STREAM_SECONDS."""
    streams["open"] += 1
    try:
        version = live.snapshot.version
        yield f"retry: 1000\nevent: hello\ndata: {version}\n\n"
        deadline = time.monotonic() + STREAM_SECONDS
        while not live.stopping and time.monotonic() < deadline:
            snapshot = await live.next_after(version, HEARTBEAT)
            if snapshot is not None:
                version = snapshot.version
                yield f"event: render\ndata: {version}\n\n"
            elif not live.stopping:
                yield ": still here\n\n"
    finally:
        streams["open"] -= 1


class EditorServer(uvicorn.Server):
    """uvicorn, plus: Ctrl-C also ends the watchers and every open event stream, so shutdown is prompt."""

    def __init__(self, config: uvicorn.Config, live: LiveIssue):
        super().__init__(config)
        self.live = live

    def handle_exit(self, sig, frame) -> None:
        self.live.stop()
        super().handle_exit(sig, frame)


@dataclass
class EditorService:
    """The editor's preview, bound to its port and ready to run until Ctrl-C."""

    live: LiveIssue
    sock: socket.socket

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.sock.getsockname()[1]}/"

    def run(self) -> None:
        config = uvicorn.Config(editor_app(self.live), log_level="warning", timeout_graceful_shutdown=5,
                                lifespan="on")
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how the editor stops it
            EditorServer(config, self.live).run(sockets=[self.sock])
        self.sock.close()


def open_editor(load_settings: Callable[[], Settings], number: int, *, port: int, config: Path | None,
                on_render: Callable[[Snapshot], None]) -> EditorService:
    """Render issue `number` and bind 127.0.0.1:`port` (0: any free port), ready to run.

    Binding now makes a port in use one clear error before anything runs.
    `load_settings` is called again at every change, so campaign.toml edits count.
    """
    settings = load_settings()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
        live = LiveIssue(load_settings, number, config_file=config_path(settings.root, config),
                         on_render=on_render)
    except OSError as error:
        sock.close()
        raise UsageError(f"cannot listen on {HOST}:{port} ({error.strerror}); pick another --port") from None
    except BaseException:
        sock.close()
        raise
    sock.listen(64)
    return EditorService(live, sock)


def config_path(settings_root: Path, config: Path | None) -> Path | None:
    """The campaign.toml to watch: the one given, else ./campaign.toml when there is one."""
    path = (config or settings_root / "campaign.toml").resolve()
    return path if path.exists() else None


def render_line(snapshot: Snapshot) -> str:
    """One line on the terminal per render: when, how long, and what the checks found (or the error)."""
    when = snapshot.made.strftime("%H:%M:%S")
    if snapshot.error:
        return f"{when} render error: {snapshot.error}"
    errors = sum(1 for finding in snapshot.findings if finding.severity == ERROR)
    return (f"{when} rendered issue {snapshot.number} in {snapshot.seconds:.2f} s: "
            f"{errors} error(s), {len(snapshot.findings) - errors} warning(s)")
