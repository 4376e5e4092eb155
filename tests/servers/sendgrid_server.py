"""A local stand-in for SendGrid's POST /v3/mail/send, on 127.0.0.1.

The real `sendgrid` client talks HTTP to it. It records every request, checks
`Authorization: Bearer <key>`, validates every body against the vendored
OpenAPI schema (../shared/vendor/sendgrid-oai/tsg_mail_v3.json) plus the limits
the schema does not enforce, and answers 202 with an X-Message-Id (200 in
sandbox mode, delivering nothing), or what the scripted fault queue says:

    server.script(Fault.rate_limited(retry_after=0.2), Fault.server_error(), Fault.drop())
    server.script(Fault.accepted_then(504), Fault.redirect(302))

Each request takes the next fault; when the queue is empty requests are
answered normally again. Standing faults, like SendGrid's own rules:

    server.refuse_address("bad@example.org")   # 400 naming personalizations.N.to.0.email
    server.max_body_bytes = 50_000               # 413 above this size

`server.delivered_count()` counts what SendGrid would have mailed, per address.
`server.suppressions` serves SendGrid's suppression lists (GET /v3/suppression/..., paginated,
answers validated against tsg_suppressions_v3.json): see sendgrid_suppressions.py.
Where ../shared is not beside the project (a git worktree), CAMPAIGN_SHARED
names the shared folder.

Standalone, for benchmarks:

    python tests/servers/sendgrid_server.py --port 0 --delay 0.05 [--api-key KEY] [--no-validate]

prints its base URL (the value for SENDGRID_API_URL) as the first line of stdout
and serves until SIGTERM or Ctrl-C, then prints a count of requests to stderr.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

try:
    from .sendgrid_suppressions import SuppressionLists, serves as serves_suppressions
except ImportError:  # run as a script (benchmarks)
    from sendgrid_suppressions import SuppressionLists, serves as serves_suppressions  # type: ignore[no-redef]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("CAMPAIGN_SHARED") or PROJECT_ROOT / ".." / "shared")
SCHEMA_FILE = SHARED / "vendor" / "sendgrid-oai" / "tsg_mail_v3.json"
SUPPRESSIONS_SCHEMA_FILE = SHARED / "vendor" / "sendgrid-oai" / "tsg_suppressions_v3.json"
REQUEST_SCHEMA = "#/components/requestBodies/PostMailSend/content/application~1json/schema"
MAIL_SEND = "/v3/mail/send"
MOVED = "/moved"                       # where the redirect fault points; a GET there answers 200
MAX_RECIPIENTS = 1000
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_SUBSTITUTIONS_BYTES = 10_000


@dataclass(frozen=True)
class Fault:
    """One scripted answer. Build with the class methods."""

    kind: str                          # "status" | "timeout" | "drop"
    status: int = 0
    headers: dict = field(default_factory=dict)
    body: dict | None = None
    seconds: float = 0.0               # timeout: how long to sleep before answering
    delivered: bool = False            # timeout/drop/status: does the request count as delivered?

    @classmethod
    def rate_limited(cls, retry_after: float | None = 1, reset_in: float | None = None) -> "Fault":
        """429 with Retry-After (seconds) and/or X-RateLimit-Reset (Unix time, reset_in seconds from now)."""
        headers = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0"}
        if retry_after is not None:
            headers["Retry-After"] = f"{retry_after:g}"
        if reset_in is not None:
            headers["X-RateLimit-Reset"] = str(int(time.time() + reset_in))
        return cls("status", 429, headers, error_body("too many requests"))

    @classmethod
    def server_error(cls, status: int = 500) -> "Fault":
        return cls("status", status, {}, error_body("internal error"))

    @classmethod
    def accepted_then(cls, status: int = 504) -> "Fault":
        """A gateway in front of an accepting backend: the mail is delivered, the answer is an error."""
        return cls("status", status, {}, error_body("gateway timeout"), delivered=True)

    @classmethod
    def redirect(cls, status: int = 302, location: str = MOVED) -> "Fault":
        """A redirect to a page that answers a GET with 200; nothing is delivered."""
        return cls("status", status, {"Location": location}, None)

    @classmethod
    def bad_request(cls, message: str = "Invalid type. Expected: string, given: integer.",
                    field_name: str | None = "personalizations.0.substitutions") -> "Fault":
        return cls("status", 400, {}, error_body(message, field_name))

    @classmethod
    def unauthorized(cls, status: int = 401) -> "Fault":
        message = ("The provided authorization grant is invalid, expired, or revoked" if status == 401
                   else "access forbidden")
        return cls("status", status, {}, error_body(message))

    @classmethod
    def timeout(cls, seconds: float = 2.0, delivered: bool = True) -> "Fault":
        """Sleep `seconds` (longer than the client's timeout), then answer 202.

        delivered=True: the request counts as delivered (processed, answer lost).
        """
        return cls("timeout", seconds=seconds, delivered=delivered)

    @classmethod
    def drop(cls, delivered: bool = False) -> "Fault":
        """Read the request, then close the connection without any answer.

        delivered=True models the worst case: SendGrid took the mail, the answer was lost.
        """
        return cls("drop", delivered=delivered)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    answer: int | str = 0             # status code sent, or "drop"
    delivered: bool = False           # would SendGrid have sent these messages?
    message_id: str = ""
    errors: list = field(default_factory=list)

    @functools.cached_property
    def body(self) -> object:
        """The JSON body parsed (None: no body, or not JSON), when first asked for: a stand-in that does
        not validate answers without parsing it, so a benchmark's million recipients cost it little CPU."""
        try:
            return json.loads(self.raw) if self.raw else None
        except ValueError:
            return None

    @property
    def recipients(self) -> list[str]:
        """Every `to` address of the request, in order (one per personalization for `campaign`)."""
        if not isinstance(self.body, dict):
            return []
        return [to.get("email", "") for p in self.body.get("personalizations", []) for to in p.get("to", [])]


def error_body(message: str, field_name: str | None = None, help_text: str | None = None) -> dict:
    return {"errors": [{"message": message, "field": field_name, "help": help_text}]}


@functools.lru_cache(maxsize=1)
def load_validator():
    """The Draft 2020-12 validator for the mail/send body, or (None, reason) when it cannot be had.

    Loaded once per process (building it takes about half a second).
    """
    if not SCHEMA_FILE.exists():
        return None, f"{SCHEMA_FILE} not found (../shared is absent): request bodies are NOT schema-validated"
    import jsonschema

    document = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    # The spec types top-level custom_args as a string; SendGrid (and its own helper) use an object.
    request = document["components"]["requestBodies"]["PostMailSend"]["content"]["application/json"]["schema"]
    request["properties"]["custom_args"] = {"type": "object", "additionalProperties": {"type": "string"}}
    root = {**document, "$ref": REQUEST_SCHEMA}
    validator = jsonschema.Draft202012Validator(root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return validator, ""


def limit_errors(body: dict) -> list[dict]:
    """SendGrid's rules the schema does not express."""
    errors = []
    seen: set[str] = set()
    total = 0
    for index, personalization in enumerate(body.get("personalizations") or []):
        for key, limit in (("custom_args", MAX_CUSTOM_ARGS_BYTES), ("substitutions", MAX_SUBSTITUTIONS_BYTES)):
            if len(json.dumps(personalization.get(key) or {}).encode()) > limit:
                errors.append(error_body(f"{key} exceed {limit:,} bytes", f"personalizations.{index}.{key}")["errors"][0])
        for kind in ("to", "cc", "bcc"):
            for recipient in personalization.get(kind) or []:
                total += 1
                address = str(recipient.get("email", "")).lower()
                if address in seen:
                    errors.append(error_body(f"duplicate address {address} in one request",
                                             f"personalizations.{index}.{kind}")["errors"][0])
                seen.add(address)
                name = str(recipient.get("name", ""))
                if ";" in name or "," in name:
                    errors.append(error_body("recipient names may not contain ';' or ','",
                                             f"personalizations.{index}.{kind}.name")["errors"][0])
    if total > MAX_RECIPIENTS:
        errors.append(error_body(f"at most {MAX_RECIPIENTS} recipients per request, got {total}",
                                 "personalizations")["errors"][0])
    custom_args = body.get("custom_args")
    if custom_args is not None and len(json.dumps(custom_args).encode()) > MAX_CUSTOM_ARGS_BYTES:
        errors.append(error_body("custom_args exceed 10,000 bytes", "custom_args")["errors"][0])
    return errors


class SendGridServer:
    """A threaded HTTP server answering like SendGrid's mail/send. Use as a context manager."""

    def __init__(self, api_key: str | None = "SG.test-key-not-secret", *, delay: float = 0.0,
                 validate: bool = True, port: int = 0):
        self.api_key = api_key           # None: any bearer token is accepted
        self.delay = delay               # seconds before every answer
        self.max_body_bytes: int | None = None   # 413 above this request size
        self.refused_addresses: dict[str, str] = {}  # address -> message of the 400 naming it
        self.requests: list[RecordedRequest] = []
        self.suppressions = SuppressionLists(SUPPRESSIONS_SCHEMA_FILE)   # GET /v3/suppression/..., /v3/asm/...
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self.gather = 0                  # >1: mail/send answers wait for this many in flight, then go last first
        self.in_flight = 0               # mail/send requests being answered now
        self.max_in_flight = 0           # the most at once since the last clear()
        self._arrivals = 0
        self._gathering = threading.Condition(self._lock)
        self.checks_limits = validate   # SendGrid's limits the schema does not express (limit_errors)
        if validate:
            self.validator, self.validation_skipped = load_validator()
        else:
            self.validator, self.validation_skipped = None, "validation turned off (--no-validate)"
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- life cycle -------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """The base URL for SENDGRID_API_URL / SendGridAPIClient(host=...)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "SendGridServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="sendgrid-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> "SendGridServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- scripting and reading back --------------------------------------------
    def script(self, *faults: Fault) -> None:
        """Queue answers: the next requests get these faults, in order."""
        with self._lock:
            self._faults.extend(faults)

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def mail_sends(self) -> list[RecordedRequest]:
        """Every POST /v3/mail/send received, whatever it was answered."""
        with self._lock:
            return [r for r in self.requests if r.path == MAIL_SEND and r.method == "POST"]

    def refuse_address(self, address: str, message: str = "Does not contain a valid address.") -> None:
        """Every request with this address gets a 400 naming its personalization (like an invalid address)."""
        with self._lock:
            self.refused_addresses[address.lower()] = message

    def delivered_count(self) -> Counter:
        """{address: how many times SendGrid would have mailed it}."""
        return Counter(self.delivered())

    def delivered(self) -> list[str]:
        """Every address SendGrid would have mailed, once per delivery (duplicates kept)."""
        with self._lock:
            return [address for r in self.requests if r.delivered for address in r.recipients]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self.refused_addresses.clear()
        self.max_body_bytes = None
        with self._lock:
            self.max_in_flight = self._arrivals = 0

    # --- answering (called from handler threads) --------------------------------
    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _record(self, request: RecordedRequest) -> int:
        """Keep the request; a mail/send one is counted in under the same lock, so that mail_sends()
        lists them in the order of arrival `gather` answers by (its number; 0 for other paths)."""
        with self._lock:
            self.requests.append(request)
            if request.path != MAIL_SEND:
                return 0
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._arrivals += 1
            return self._arrivals

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _arrive(self, arrival: int) -> None:
        """With `gather`, hold mail/send request number `arrival` until its group is complete (at most 10 s)."""
        with self._lock:
            group = self.gather
            if group > 1:
                group_end = ((arrival - 1) // group + 1) * group
                self._gathering.notify_all()
                self._gathering.wait_for(lambda: self._arrivals >= group_end or self._stopping.is_set(), timeout=10)
        if group > 1:   # the last to arrive answers first, 0.1 s apart
            self._sleep(0.1 * (group - 1 - (arrival - 1) % group))

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _new_message_id(self) -> str:
        return f"{uuid.uuid4().hex[:22]}-{next(self._ids)}"

    def _check(self, request: RecordedRequest) -> tuple[int, dict | None]:
        """The normal answer to a request: (status, error body or None)."""
        if request.path == MOVED and request.method == "GET":
            return 200, None  # any web page: what a followed redirect would have found
        if request.path != MAIL_SEND:
            return 404, error_body(f"no route for {request.path}")
        if request.method != "POST":
            return 405, error_body("method not allowed")
        if not self._authorized(request):
            return 401, error_body("The provided authorization grant is invalid, expired, or revoked")
        if self.max_body_bytes is not None and len(request.raw) > self.max_body_bytes:
            return 413, error_body(f"request entity too large ({len(request.raw)} bytes)")
        if self.validator is None and not self.checks_limits and not self.refused_addresses:
            return self._unread(request)
        if not isinstance(request.body, dict):
            return 400, error_body("Bad Request: the body is not a JSON object", None)
        errors = self._refused(request.body)
        if self.validator is not None:
            for error in self.validator.iter_errors(request.body):
                path = ".".join(str(part) for part in error.absolute_path)
                errors.append({"message": error.message, "field": path or None, "help": None})
        if self.checks_limits:   # off with --no-validate: a stand-in for benchmarks takes little CPU
            errors += limit_errors(request.body)
        if errors:
            request.errors = errors
            return 400, {"errors": errors}
        return (200 if _sandbox(request.body) else 202), None

    def _unread(self, request: RecordedRequest) -> tuple[int, dict | None]:
        """The answer of a stand-in that does not validate (--no-validate), without parsing the body."""
        if request.raw.lstrip()[:1] != b"{":
            return 400, error_body("Bad Request: the body is not a JSON object", None)
        return (200 if b'"sandbox_mode"' in request.raw and _sandbox(request.body) else 202), None   # type: ignore[arg-type]

    def _authorized(self, request: RecordedRequest) -> bool:
        authorization = request.headers.get("Authorization", "")
        return authorization.startswith("Bearer ") and (
            self.api_key is None or authorization == f"Bearer {self.api_key}")

    def _refused(self, body: dict) -> list[dict]:
        with self._lock:
            refused = dict(self.refused_addresses)
        if not refused:
            return []
        return [{"message": refused[to.get("email", "").lower()], "field": f"personalizations.{index}.to.{position}.email",
                 "help": None}
                for index, personalization in enumerate(body.get("personalizations") or [])
                for position, to in enumerate(personalization.get("to") or [])
                if isinstance(to, dict) and to.get("email", "").lower() in refused]


def _sandbox(body: dict) -> bool:
    return bool(((body.get("mail_settings") or {}).get("sandbox_mode") or {}).get("enable"))


def _handler_for(server: SendGridServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self._answer()

        def do_GET(self):
            self._answer()

        def _answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            request = RecordedRequest(self.command, self.path.split("?")[0], dict(self.headers.items()), raw)
            arrival = server._record(request)
            if serves_suppressions(self.path):
                status, answer, headers = server.suppressions.answer(self.command, self.path,
                                                                     server._authorized(request))
                self._reply(status, answer, headers, request)
                return
            if request.path != MAIL_SEND:
                self._respond(request)
                return
            try:
                server._arrive(arrival)
                self._respond(request)
            finally:
                server._leave()

        def _respond(self, request: RecordedRequest):
            if server.delay:
                server._sleep(server.delay)
            fault = server._next_fault() if request.path == MAIL_SEND else None
            status, error = server._check(request)
            would_deliver = status == 202           # 200 is sandbox mode (or a GET): nothing is mailed
            if fault is not None and fault.kind == "drop":
                request.answer, request.delivered = "drop", fault.delivered and would_deliver
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault is not None and fault.kind == "status":
                request.delivered = fault.delivered and would_deliver
                self._reply(fault.status, fault.body, fault.headers, request)
                return
            if fault is not None:  # timeout: answers normally, too late
                request.delivered = fault.delivered and would_deliver
                server._sleep(fault.seconds)
            else:
                request.delivered = would_deliver
            headers = {}
            if status == 202:
                request.message_id = server._new_message_id()
                headers["X-Message-Id"] = request.message_id
            self._reply(status, error, headers, request)

        def _reply(self, status: int, body: object, headers: dict, request: RecordedRequest):
            request.answer = status
            data = json.dumps(body).encode() if body is not None else b""
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (timeout fault)
            self.close_connection = True

        def log_message(self, format, *args):  # noqa: A002 - quiet
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="Local SendGrid mail/send stand-in")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--api-key", default=None, help="accepted key (default: any bearer token)")
    parser.add_argument("--no-validate", action="store_true", help="skip JSON schema validation")
    options = parser.parse_args()
    server = SendGridServer(options.api_key, delay=options.delay, validate=not options.no_validate,
                            port=options.port).start()
    print(server.url, flush=True)
    if server.validation_skipped:
        print(f"note: {server.validation_skipped}", file=sys.stderr, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        while not done.wait(1.0):
            pass
    finally:
        server.stop()
        sends = server.mail_sends()
        print(f"{len(sends)} requests, {len(server.delivered())} recipients delivered", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
