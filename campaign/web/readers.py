"""The readers' service (`campaign serve`): every link in the email gets an answer.

- `GET <unsubscribe path>?t=TOKEN`: a confirmation page (masked address, one button). Changes nothing:
  mail scanners and link previewers fetch every link.
- `POST <unsubscribe path>?t=TOKEN`: records the unsubscribe (source `one-click` for an RFC 8058 body
  `List-Unsubscribe=One-Click`, `web` for the page's button). Idempotent: the first record stands.
- `GET <view path>` (e.g. /newsletter/issue-30/) and its images: the issue's web copy from
  output/issue-N/web/ (`campaign preview --web`); `GET` on the parent path lists the issues.
- `GET /healthz`.

The paths come from `[links]` in campaign.toml, so links in mail already sent keep working.
Tokens are looked up in the ledger's link_tokens table (one primary-key lookup). Every
ledger call runs in a worker thread with its own connection (WAL, 30 s busy timeout), through
the ledger and suppressions functions the CLI uses.
"""

from __future__ import annotations

import html
import re
import sqlite3
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncGenerator, AsyncIterator, Callable, TypeVar
from urllib.parse import parse_qsl, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..addresses import masked
from ..config import Settings, WebLinks
from ..errors import ConfigError, LedgerError
from ..ledger import address_for_token, index_link_tokens, open_ledger
from ..personalize import recipient_token
from ..suppressions import find_suppression, record_unsubscribe
from .body import capped_body
from .pages import ArchiveEntry, archive_page, confirm_page, done_page, problem_page
from .webhook import webhook_routes

FORM_LIMIT = 64 * 1024          # bytes: an unsubscribe form is a few dozen
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{8,128}")
ONE_CLICK_FIELD, ONE_CLICK_VALUE = "List-Unsubscribe", "One-Click"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",   # the page's URL carries the token
}
NO_STORE = {"Cache-Control": "no-store"}
T = TypeVar("T")


@dataclass(frozen=True)
class ReaderPaths:
    """Where the service answers, from the path part of `[links]`."""

    unsubscribe: str      # route path, e.g. /newsletter/unsubscribe (or /u/{token} when the token is in the path)
    token_query: str      # the query parameter carrying the token, e.g. "t" ('' when it is in the path)
    issue: str            # /newsletter/issue-{issue:int}/
    archive: str          # /newsletter/

    def issue_path(self, number: int) -> str:
        return self.issue.replace("{issue:int}", str(number))


def reader_paths(links: WebLinks) -> ReaderPaths:
    unsubscribe = urlsplit(links.unsubscribe_url)
    token_query = next((key for key, value in parse_qsl(unsubscribe.query) if value == "{token}"), "")
    if not token_query and "{token}" not in unsubscribe.path:
        raise ConfigError(f"[links] unsubscribe_url {links.unsubscribe_url!r} carries no {{token}}; "
                          "put it in the path or the query, e.g. ?t={token}")
    view_path = urlsplit(links.view_url).path
    if "{issue}" not in view_path or "{token}" in view_path:
        raise ConfigError(f"[links] view_url {links.view_url!r}: its path needs {{issue}} and no {{token}} "
                          "(the web copy is the same for everyone)")
    archive = view_path[:view_path.index("{issue}")].rpartition("/")[0] + "/"
    issue = view_path.replace("{issue}", "{issue:int}")
    return ReaderPaths(unsubscribe=unsubscribe.path or "/", token_query=token_query,
                       issue=issue if issue.endswith("/") else issue + "/", archive=archive)


class LedgerBusy(Exception):
    """The ledger stayed locked past the busy timeout, or cannot be opened: the reader should retry."""


class LedgerAccess:
    """The service's way into the ledger: a connection per worker thread, every call off the event loop."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()

    async def call(self, function: Callable[..., T], *args: object) -> T:
        return await run_in_threadpool(self._call, function, *args)

    def _call(self, function: Callable[..., T], *args: object) -> T:
        try:
            connection = getattr(self._local, "connection", None)
            if connection is None:
                connection = self._local.connection = open_ledger(self.path)
            return function(connection, *args)
        except (sqlite3.OperationalError, LedgerError) as error:
            raise LedgerBusy(str(error)) from None


def create_app(settings: Settings) -> Starlette:
    """The readers' ASGI app for `settings` (same campaign.toml, ledger and token secret as the CLI)."""
    access = LedgerAccess(settings.database)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Addresses recorded before the token table existed get their token once, at start.
        await access.call(index_link_tokens, lambda email: recipient_token(email, settings.token_secret))
        yield

    app = Starlette(routes=reader_routes(settings) + webhook_routes(settings), lifespan=lifespan,
                    exception_handlers={HTTPException: _http_problem, LedgerBusy: _ledger_busy})
    app.router.redirect_slashes = False   # its redirect would be built from the Host header
    app.state.settings, app.state.ledger, app.state.paths = settings, access, reader_paths(settings.links)
    app.add_middleware(PageHeaders)
    return app


def reader_routes(settings: Settings) -> list[BaseRoute]:
    """Every route of the service; another door into the ledger (a webhook) appends its own."""
    paths = reader_paths(settings.links)
    return [
        Route("/healthz", health, methods=["GET"]),
        Route(paths.unsubscribe, unsubscribe_page, methods=["GET"]),
        Route(paths.unsubscribe, unsubscribe, methods=["POST"]),
        Route(paths.archive, archive, methods=["GET"]),
        Route(paths.issue, issue_page, methods=["GET"]),
        Route(paths.issue.rstrip("/"), issue_without_slash, methods=["GET"]),
        Route(paths.issue + "{file:path}", issue_file, methods=["GET"]),
    ]


async def health(request: Request) -> Response:
    await request.app.state.ledger.call(lambda connection: connection.execute("SELECT 1").fetchone())
    return PlainTextResponse("ok\n")


async def unsubscribe_page(request: Request) -> Response:
    """GET: who this link is for (masked) and one button. Nothing is recorded."""
    token = _token(request)
    address = token and await request.app.state.ledger.call(address_for_token, token)
    if not address:
        return _bad_link(request, 400 if token is None else 404)
    suppression = await request.app.state.ledger.call(find_suppression, address)
    already = suppression is not None and suppression.reason == "unsubscribed"
    paths: ReaderPaths = request.app.state.paths
    action = request.url.path + (f"?{paths.token_query}={token}" if paths.token_query else "")
    return HTMLResponse(confirm_page(_name(request), masked(address), action, already), headers=NO_STORE)


async def unsubscribe(request: Request) -> Response:
    """POST: record `unsubscribed` (one-click or web); a second POST changes nothing."""
    body = await capped_body(request, FORM_LIMIT)
    if body is None:
        return _problem(request, 413, "Too much data", "This form sends a few words; nothing was recorded.")
    token = _token(request)
    fields = await _form_fields(request.headers, body)
    address = token and await request.app.state.ledger.call(address_for_token, token)
    if fields is None or not address:
        return _bad_link(request, 400 if token is None or fields is None else 404)
    source = "one-click" if fields.get(ONE_CLICK_FIELD) == ONE_CLICK_VALUE else "web"
    await request.app.state.ledger.call(record_unsubscribe, address, source)
    return HTMLResponse(done_page(_name(request), masked(address)), headers=NO_STORE)


async def archive(request: Request) -> Response:
    """The issues that have a web copy, newest first."""
    settings: Settings = request.app.state.settings
    paths: ReaderPaths = request.app.state.paths
    entries = [ArchiveEntry(number, _issue_title(index, number), paths.issue_path(number))
               for number, index in sorted(_web_copies(settings.build_dir).items(), reverse=True)]
    return HTMLResponse(archive_page(_name(request), entries))


async def issue_page(request: Request) -> Response:
    return _web_file(request, "index.html")


async def issue_file(request: Request) -> Response:
    return _web_file(request, request.path_params["file"])


async def issue_without_slash(request: Request) -> Response:
    """/newsletter/issue-30 -> /newsletter/issue-30/ (its images are relative): a path built from the number."""
    return RedirectResponse(request.app.state.paths.issue_path(int(request.path_params["issue"])), 308)


def _web_file(request: Request, name: str) -> Response:
    number = int(request.path_params["issue"])
    folder = (request.app.state.settings.issue_build_dir(number) / "web").resolve()
    path = (folder / name).resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        raise HTTPException(404)
    return FileResponse(path)


def _web_copies(build_dir: Path) -> dict[int, Path]:
    copies = {}
    for index in build_dir.glob("issue-*/web/index.html"):
        number = index.parent.parent.name.removeprefix("issue-")
        if number.isdigit():
            copies[int(number)] = index
    return copies


def _issue_title(index: Path, number: int) -> str:
    match = re.search(r"<title>([^<]{1,300})</title>", index.read_text(encoding="utf-8", errors="replace"))
    return html.unescape(match.group(1)).strip() if match else f"Issue {number}"


def _token(request: Request) -> str | None:
    """The token from the query or the path, when it has a token's shape."""
    token_query = request.app.state.paths.token_query
    token = request.query_params.get(token_query) if token_query else request.path_params.get("token")
    return token if token and TOKEN_SHAPE.fullmatch(token) else None


async def _form_fields(headers: Headers, body: bytes) -> dict[str, str] | None:
    """The fields of a urlencoded or multipart form (RFC 8058 allows either); None when malformed."""
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    try:
        if media_type == "multipart/form-data":
            async def replay() -> AsyncGenerator[bytes, None]:
                yield body

            form = await MultiPartParser(headers, replay(), max_files=0, max_fields=20).parse()
            return {name: value for name, value in form.items() if isinstance(value, str)}
        return dict(parse_qsl(body.decode("utf-8"), max_num_fields=20))
    except (ValueError, UnicodeDecodeError, MultiPartException):
        return None


def _name(request: Request) -> str:
    return request.app.state.settings.newsletter_name


def _bad_link(request: Request, status: int) -> Response:
    """The same page for a malformed, forged or unknown token: nothing about any address."""
    return _problem(request, status, "This link does not work",
                    "It may have been copied incompletely. Nothing was changed. To stop getting the "
                    "newsletter, use the unsubscribe link in the latest issue, or reply to it.")


def _problem(request: Request, status: int, title: str, text: str) -> Response:
    return HTMLResponse(problem_page(_name(request), title, text), status_code=status, headers=NO_STORE)


async def _http_problem(request: Request, error: Exception) -> Response:
    status = error.status_code if isinstance(error, HTTPException) else 500
    titles = {404: "Page not found", 405: "Not allowed here"}
    return _problem(request, status, titles.get(status, "Something went wrong"),
                    "There is nothing at this address. Links in the newsletter lead to the pages that exist.")


async def _ledger_busy(request: Request, error: Exception) -> Response:
    response = _problem(request, 503, "Please try again",
                        "We could not record this just now. Nothing was changed; try again in a minute.")
    response.headers["Retry-After"] = "60"
    return response


class PageHeaders:
    """Every answer carries a no-script CSP, X-Frame-Options DENY, nosniff and no-referrer."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in PAGE_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
