"""SendGrid v3 mail/send with the official `sendgrid` client: one request per batch, strict answers.

The body is built in sendgrid_payload.py. What each answer becomes:

* 202 with an X-Message-Id (sandbox: 200): accepted. Any other 2xx: unknown,
  because it is not what SendGrid's mail/send answers, yet the body went out.
* A redirect is never followed (urllib would turn the POST into a GET that
  keeps the API key, and its 200 would look like success): refused as a wrong
  SENDGRID_API_URL, nobody accepted.
* 400 naming personalizations (`personalizations.523.to.0.email`): those
  recipients are rejected with SendGrid's message and the rest are posted again
  at once, in the same call (their ledger rows are still in flight). A 400
  naming no recipient refuses the whole request (`refused`: safe to resend).
* 413: the batch is split in halves until each part fits.
* 429 and 503 (documented as "not processed"), and a connection that never
  opened: TransientProviderError, the send loop retries. 500, 502, 504 and any
  other 5xx may come after SendGrid queued the batch: unknown, never retried
  automatically. So is a timeout or a dropped connection after sending.

Once any part of a batch may have gone out, send() never raises for the rest:
a raise makes the send loop retry the whole batch, which would mail that part
twice. The remaining parts are answered `failed` (or `unknown`) instead.

The API key is read from Settings (env SENDGRID_API_KEY only) and never
reaches an error message or a log record: python-http-client logs the
Authorization header at DEBUG, so its logger is held at INFO and filtered.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Mapping
from urllib.parse import urlsplit

import python_http_client  # type: ignore[import-untyped]
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from ..config import SendGridSettings, Settings
from ..errors import ProviderAuthError, ProviderError, TransientProviderError
from ..personalize import Envelope
from . import info
from .base import Batch, DeliveryResult, Status
from .sendgrid_payload import Body, JsonText, Payload, build_body, build_payload  # noqa: F401 (build_payload re-exported)

INFO = info.SENDGRID
HTTP_LOGGER = "python_http_client.client"
BEARER = re.compile(r"(Bearer\s+)[^\s'\"}]+")
PERSONALIZATION_FIELD = re.compile(r"^personalizations\.(\d+)(?:\.|$)")
NOT_PROCESSED = (429, 503)            # SendGrid documents these as "nothing was processed"
JSON_BODY = {"Content-Type": "application/json; charset=utf-8"}


@dataclass
class _Built:
    """One batch's body, built before the write-ahead: the payload, who goes, who is refused already."""

    payload: Payload
    sendable: list[Envelope] = field(default_factory=list)
    refused: dict[str, DeliveryResult] = field(default_factory=dict)


class SendGridProvider:
    """Provider for SendGrid's v3 API; one request per batch of up to 1000 recipients."""

    info = INFO
    build_body = staticmethod(build_body)   # (batch, settings) -> Body, for prepare(batch, body) (send/builder.py)

    def __init__(self, settings: Settings):
        config = settings.sendgrid
        if not config.api_key:
            raise ProviderAuthError(
                "SENDGRID_API_KEY is not set: export the API key (Mail Send permission) "
                "before sending with SendGrid"
            )
        self._settings = settings
        self._host = urlsplit(config.api_url).netloc or config.api_url
        _quiet_http_logger(config.api_key)
        self._client = SendGridAPIClient(config.api_key, host=config.api_url.rstrip("/"))
        self._client.client.__class__ = _NoRedirectClient
        self._client.client.timeout = config.timeout
        self.concurrency = config.concurrency
        self._prepared: dict[str, _Built] = {}   # batch_id -> body built before the write-ahead

    def prepare(self, batch: Batch, body: object = None) -> None:
        """Build the batch's body now, before it is written ahead: a build error leaves it pending.

        `body`: what `build_body` already made of this batch's envelopes, elsewhere (send/builder.py).
        """
        if batch.envelopes:
            self._prepared[batch.batch_id] = self._build(batch, body if isinstance(body, Body) else None)

    def send(self, batch: Batch) -> list[DeliveryResult]:
        envelopes = list(batch.envelopes)
        if not envelopes:
            return []
        built = self._prepared.get(batch.batch_id) or self._build(batch)
        results = dict(built.refused)
        try:
            self._post_parts(built.payload, built.sendable, results)
        except TransientProviderError:
            raise   # nothing went out: the send loop posts the same body again
        except BaseException:
            self._prepared.pop(batch.batch_id, None)
            raise
        self._prepared.pop(batch.batch_id, None)
        return [results[envelope.email] for envelope in envelopes]

    def _build(self, batch: Batch, body: Body | None = None) -> "_Built":
        envelopes = list(batch.envelopes)
        _check_batch(envelopes)
        payload = Payload(batch, self._settings, body)   # one per batch: its shared part is serialised once
        body = body or payload.built()
        built = _Built(payload)
        for envelope in envelopes:
            problem = body.refused.get(envelope.email)
            if problem:
                built.refused[envelope.email] = DeliveryResult(envelope.email, Status.REFUSED, error=problem)
            else:
                built.sendable.append(envelope)
        return built

    def close(self) -> None:
        pass

    def _post_parts(self, payload: Payload, envelopes: list[Envelope], results: dict[str, DeliveryResult]) -> None:
        """Post the batch, then whatever a 400 naming recipients or a 413 leaves to post again."""
        parts = [envelopes] if envelopes else []
        while parts:
            part = parts.pop(0)
            if len(part) > 1 and payload.too_large(part):
                parts[:0] = _halves(part)
                continue
            may_have_gone_out = any(r.status in (Status.ACCEPTED, Status.UNKNOWN) for r in results.values())
            try:
                answer = self._post(payload, part)
            except ProviderError as error:
                if not may_have_gone_out:
                    raise  # nothing of this batch went out: the send loop may retry all of it
                for envelope in part + [e for rest in parts for e in rest]:
                    results[envelope.email] = DeliveryResult(envelope.email, Status.FAILED, error=str(error))
                return
            results.update((result.email, result) for result in answer.results)
            parts[:0] = answer.again

    def _post(self, payload: Payload, part: list[Envelope]) -> "_Answer":
        try:
            # the body is joined from personalizations serialised once: a str with a JSON media type that is
            # not exactly "application/json" goes out as its UTF-8 bytes, not through json.dumps again
            response = self._client.client.mail.send.post(request_body=JsonText(payload.body_json(part)),
                                                          request_headers=JSON_BODY)
        except HTTPError as error:
            return self._answer_error(error, part)
        except urllib.error.URLError as error:
            # raised while connecting or writing the request: nothing was accepted
            raise TransientProviderError(
                f"cannot reach SendGrid at {self._host}: {_reason(error.reason)}"
            ) from None
        except (TimeoutError, OSError, http.client.HTTPException) as error:
            # the request was sent and the answer never came: it may have gone out
            reason = f"no answer from SendGrid at {self._host} ({_reason(error)}); the batch may or may not have been sent"
            return _Answer(_all(part, Status.UNKNOWN, reason))
        return _Answer(self._answer_success(response.status_code, response.headers, part, payload.batch.sandbox))

    def _answer_success(self, status: int, headers, part: list[Envelope], sandbox: bool) -> list[DeliveryResult]:
        message_id = (headers.get("X-Message-Id") or "") if headers else ""
        if (sandbox and status == 200) or (not sandbox and status == 202 and message_id):
            return _all(part, Status.ACCEPTED, message_id=message_id)
        expected = "200 (sandbox mode)" if sandbox else "202 with an X-Message-Id"
        got = f"{status}" + (" without an X-Message-Id" if status == 202 else "")
        return _all(part, Status.UNKNOWN, f"SendGrid at {self._host} answered {got}, not {expected}: the batch "
                                          "may or may not have been sent, so nobody is counted as accepted")

    def _answer_error(self, error: HTTPError, part: list[Envelope]) -> "_Answer":
        status = error.status_code
        said = sendgrid_errors(error.body)
        evidence = f": {said}" if said else ""
        if status in (401, 403):
            what = "rejected the API key" if status == 401 else "refused the request"
            raise ProviderAuthError(
                f"SendGrid {what} ({status}): check SENDGRID_API_KEY"
                + (" and the sender identity" if status == 403 else "")
                + (f" (SendGrid said: {said})" if said else "")
            )
        if status in NOT_PROCESSED:
            what = "is rate limiting" if status == 429 else "is unavailable"
            raise TransientProviderError(f"SendGrid at {self._host} {what} ({status}){evidence}",
                                         retry_after=retry_after(error.headers))
        if status >= 500:
            return _Answer(_all(part, Status.UNKNOWN,
                                f"SendGrid at {self._host} answered {status} after the batch was sent{evidence}; "
                                "it may have been queued all the same, so it is not resent automatically"))
        if status == 400:
            return _bad_request(error.body, said, part)
        if status == 413:
            if len(part) > 1:
                return _Answer([], again=_halves(part))
            return _Answer(_all(part, Status.REFUSED, f"SendGrid refused the request as too large (413){evidence}"))
        if 300 <= status < 400:
            location = error.headers.get("Location", "") if error.headers else ""
            raise ProviderError(f"SendGrid at {self._host} answered {status}, a redirect"
                                + (f" to {location}" if location else "")
                                + "; redirects are never followed: check SENDGRID_API_URL")
        raise ProviderError(
            f"SendGrid at {self._host} answered {status} {error.reason}{evidence}"
            + ("; check SENDGRID_API_URL" if status in (404, 405) else "")
        )


@dataclass(frozen=True)
class _Answer:
    """What one request settled (`results`) and what is left to post again (`again`, nothing was sent)."""

    results: list[DeliveryResult]
    again: list[list[Envelope]] = field(default_factory=list)


def _bad_request(body: bytes | None, said: str, part: list[Envelope]) -> _Answer:
    """A 400 costs only the recipients it names; one naming none refuses the request (safe to resend)."""
    named = _named_personalizations(body, len(part))
    if not named:
        return _Answer(_all(part, Status.REFUSED, f"SendGrid refused the request (400): {said or 'no reason given'}"))
    rejected = [DeliveryResult(envelope.email, Status.REJECTED, error=f"SendGrid refused this recipient (400): "
                                                                      f"{named[index]}")
                for index, envelope in enumerate(part) if index in named]
    rest = [envelope for index, envelope in enumerate(part) if index not in named]
    return _Answer(rejected, again=[rest] if rest else [])


def _named_personalizations(body: bytes | None, count: int) -> dict[int, str]:
    """{index: SendGrid's message} when every error names a personalization of this request, else {}."""
    try:
        errors = json.loads(body or b"").get("errors") or []
    except (ValueError, AttributeError):
        return {}
    named: dict[int, str] = {}
    for error in errors:
        match = PERSONALIZATION_FIELD.match(str(error.get("field") or "")) if isinstance(error, dict) else None
        if match is None or int(match.group(1)) >= count:
            return {}
        index = int(match.group(1))
        text = f"{str(error.get('message') or '').strip()} (field: {error['field']})"
        named[index] = f"{named[index]}; {text}" if index in named else text
    return named


def _all(part: list[Envelope], status: Status, error: str = "", message_id: str = "") -> list[DeliveryResult]:
    return [DeliveryResult(envelope.email, status, message_id=message_id, error=error) for envelope in part]


def _halves(part: list[Envelope]) -> list[list[Envelope]]:
    middle = (len(part) + 1) // 2
    return [part[:middle], part[middle:]]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is an answer, not an instruction: urllib would re-send the POST as a GET keeping the API key."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError with the 3xx, which python-http-client passes on


class _NoRedirectClient(python_http_client.Client):
    """python-http-client's Client, whose requests never follow a redirect.

    The client builds a fresh `urllib.build_opener()` (which follows 301/302/303)
    for every call and a fresh Client per URL segment; both are replaced here.
    """

    def _build_client(self, name=None):
        client = super()._build_client(name)
        client.__class__ = _NoRedirectClient
        return client

    def _make_request(self, opener, request, timeout=None):
        return super()._make_request(urllib.request.build_opener(_NoRedirects()), request, timeout=timeout)


def _check_batch(envelopes: list[Envelope]) -> None:
    if len(envelopes) > INFO.max_batch_size:
        raise ProviderError(
            f"a SendGrid batch holds at most {INFO.max_batch_size} recipients, got {len(envelopes)}"
        )
    seen: dict[str, int] = {}
    for index, envelope in enumerate(envelopes):
        key = envelope.email.lower()
        if key in seen:
            raise ProviderError(
                f"{envelope.email} appears twice in one SendGrid batch (positions {seen[key] + 1} "
                f"and {index + 1}); SendGrid refuses duplicate addresses in a request"
            )
        seen[key] = index


def sendgrid_errors(body: bytes | None) -> str:
    """SendGrid's own error messages and fields from an ErrorResponse body, on one line."""
    if not body:
        return ""
    try:
        errors = json.loads(body).get("errors") or []
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace").strip()
    described = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        text = str(error.get("message") or "").strip()
        if error.get("field"):
            text += f" (field: {error['field']})"
        described.append(text)
    return "; ".join(described)


def retry_after(headers: Mapping[str, str] | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait, from Retry-After (seconds or HTTP date) or X-RateLimit-Reset (Unix time)."""
    if not headers:
        return None
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now())
            except (TypeError, ValueError):
                pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - now())
        except ValueError:
            pass
    return None


def _reason(error: object) -> str:
    return str(error) or type(error).__name__


class _RedactKey(logging.Filter):
    """Masks the API key and any bearer token in python-http-client's records."""

    def __init__(self):
        super().__init__()
        self.keys: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for key in self.keys:
            message = message.replace(key, "[redacted]")
        record.msg, record.args = BEARER.sub(r"\1[redacted]", message), None
        return True


_REDACT = _RedactKey()


def _quiet_http_logger(api_key: str) -> None:
    """python-http-client logs the Authorization header at DEBUG: hold it at INFO and redact."""
    logger = logging.getLogger(HTTP_LOGGER)
    if logger.level == logging.NOTSET or logger.level < logging.INFO:
        logger.setLevel(logging.INFO)
    _REDACT.keys.add(api_key)
    if _REDACT not in logger.filters:
        logger.addFilter(_REDACT)


def api_client(config: SendGridSettings, purpose: str) -> SendGridAPIClient:
    """The official client for other API calls (`suppress sync`): same host, timeout, no redirects,
    and the key kept out of the logs. `purpose` names the permission the key needs."""
    if not config.api_key:
        raise ProviderAuthError(f"SENDGRID_API_KEY is not set: export an API key with {purpose} permission")
    _quiet_http_logger(config.api_key)
    client = SendGridAPIClient(config.api_key, host=config.api_url.rstrip("/"))
    client.client.__class__ = _NoRedirectClient
    client.client.timeout = config.timeout
    return client
