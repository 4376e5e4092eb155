"""SendGrid v3 mail/send with the official `sendgrid` client.

One request per batch: the issue's HTML and text go once as `content`, and
each recipient is one personalization (nobody sees another address) with
substitutions for the merge placeholders. A value lands in three places, each
escaped differently, so each placeholder gets a tag per place:

* HTML: the placeholder exactly as written (`[[name|colleague]]`), HTML-escaped value;
* text: `[[name|colleague:t]]`, the plain value;
* subject: `[[name|colleague:s]]`, the value cleaned for a header.

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
from typing import Callable, Mapping
from urllib.parse import urlsplit

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from ..config import Settings
from ..errors import ProviderAuthError, ProviderError, TransientProviderError
from ..mime import ONE_CLICK, list_id, list_unsubscribe
from ..personalize import (
    Envelope,
    MergeTemplate,
    Placeholder,
    escape_header,
    escape_html,
    escape_text,
)
from .base import Batch, DeliveryResult, ProviderInfo, Status

INFO = ProviderInfo(name="sendgrid", max_batch_size=1000)
HTTP_LOGGER = "python_http_client.client"
NAME_FORBIDDEN = re.compile(r"[;,\x00-\x1f\x7f]+")
BEARER = re.compile(r"(Bearer\s+)[^\s'\"}]+")


class SendGridProvider:
    """Provider for SendGrid's v3 API; one request per batch of up to 1000 recipients."""

    info = INFO

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
        self._client.client.timeout = config.timeout

    def send(self, batch: Batch) -> list[DeliveryResult]:
        envelopes = list(batch.envelopes)
        if not envelopes:
            return []
        _check_batch(envelopes)
        payload = build_payload(batch, self._settings)
        try:
            response = self._client.send(payload)
        except HTTPError as error:
            return self._answer_error(error, envelopes)
        except urllib.error.URLError as error:
            # raised while connecting or writing the request: nothing was accepted
            raise TransientProviderError(
                f"cannot reach SendGrid at {self._host}: {_reason(error.reason)}"
            ) from None
        except (TimeoutError, OSError, http.client.HTTPException) as error:
            # the request was sent and the answer never came: it may have gone out
            reason = f"no answer from SendGrid at {self._host} ({_reason(error)}); the batch may or may not have been sent"
            return [DeliveryResult(envelope.email, Status.UNKNOWN, error=reason) for envelope in envelopes]
        message_id = response.headers.get("X-Message-Id", "") if response.headers else ""
        return [DeliveryResult(envelope.email, Status.ACCEPTED, message_id=message_id) for envelope in envelopes]

    def close(self) -> None:
        pass

    def _answer_error(self, error: HTTPError, envelopes: list[Envelope]) -> list[DeliveryResult]:
        status = error.status_code
        said = sendgrid_errors(error.body)
        if status in (401, 403):
            what = "rejected the API key" if status == 401 else "refused the request"
            raise ProviderAuthError(
                f"SendGrid {what} ({status}): check SENDGRID_API_KEY"
                + (" and the sender identity" if status == 403 else "")
                + (f" (SendGrid said: {said})" if said else "")
            )
        if status == 429:
            raise TransientProviderError(
                f"SendGrid at {self._host} is rate limiting (429)" + (f": {said}" if said else ""),
                retry_after=retry_after(error.headers),
            )
        if status >= 500:
            raise TransientProviderError(
                f"SendGrid at {self._host} failed ({status})" + (f": {said}" if said else ""),
                retry_after=retry_after(error.headers),
            )
        if status == 400:
            reason = f"SendGrid rejected the request (400): {said or 'no reason given'}"
            return [DeliveryResult(envelope.email, Status.REJECTED, error=reason) for envelope in envelopes]
        raise ProviderError(
            f"SendGrid at {self._host} answered {status} {error.reason}"
            + (f": {said}" if said else "")
            + ("; check SENDGRID_API_URL" if status in (404, 405) else "")
        )


def build_payload(batch: Batch, settings: Settings) -> dict:
    """The mail/send JSON body for one batch: content once, one personalization per recipient."""
    issue = batch.issue
    sender, links = settings.sender, settings.links
    html_tags = _tag_fills(issue.html, lambda p: p.token, escape_html)
    text_tags = _tag_fills(issue.text, lambda p: _suffixed(p, "t"), escape_text)
    subject_tags = _tag_fills(issue.subject, lambda p: _suffixed(p, "s"), escape_header)
    subject = issue.subject.with_tags(lambda p: _suffixed(p, "s"))
    payload: dict = {
        "personalizations": [
            _personalization(envelope, (html_tags, text_tags, subject_tags), links)
            for envelope in batch.envelopes
        ],
        "from": _address(sender.from_email, sender.from_name),
        "subject": subject,
        "content": [
            {"type": "text/plain", "value": issue.text.with_tags(lambda p: _suffixed(p, "t"))},
            {"type": "text/html", "value": issue.html.source},
        ],
        "headers": {"List-Id": list_id(issue.number, sender)},
        "categories": _categories(batch),
        "custom_args": {"issue": str(issue.number), "batch": batch.batch_id, "lists": ",".join(batch.lists)},
    }
    if sender.reply_to:
        payload["reply_to"] = {"email": sender.reply_to}
    if batch.sandbox:
        payload["mail_settings"] = {"sandbox_mode": {"enable": True}}
    return payload


TagFills = dict[str, tuple[Placeholder, Callable[[str], str]]]


def _tag_fills(template: MergeTemplate, tag_for: Callable[[Placeholder], str], escape) -> TagFills:
    """tag -> (placeholder, escape): the substitution value is the escaped value or fallback."""
    return {tag_for(p): (p, escape) for p in template.placeholders}


def _suffixed(placeholder: Placeholder, suffix: str) -> str:
    return placeholder.token[:-2] + f":{suffix}]]"


def _personalization(envelope: Envelope, tag_sets: tuple[TagFills, ...], links) -> dict:
    substitutions = {
        tag: escape(placeholder.value_in(envelope.fields))
        for tags in tag_sets
        for tag, (placeholder, escape) in tags.items()
    }
    personalization: dict = {"to": [_address(envelope.email, envelope.name)]}
    if substitutions:
        personalization["substitutions"] = substitutions
    unsubscribe = list_unsubscribe(envelope.unsubscribe_url, links, envelope.token)
    headers = {}
    if unsubscribe:
        headers["List-Unsubscribe"] = unsubscribe
    if envelope.unsubscribe_url:
        headers["List-Unsubscribe-Post"] = ONE_CLICK
    if headers:
        personalization["headers"] = headers
    return personalization


def _address(addr: str, name: str) -> dict:
    """SendGrid's {email, name}: names may not contain ';' or ','."""
    cleaned = " ".join(NAME_FORBIDDEN.sub(" ", name or "").split())
    return {"email": addr, "name": cleaned} if cleaned else {"email": addr}


def _categories(batch: Batch) -> list[str]:
    categories = ["newsletter", f"issue-{batch.issue.number}"]
    if batch.test:
        categories.append("test-send")
    categories += [f"list-{name}" for name in batch.lists]
    return list(dict.fromkeys(category[:255] for category in categories))[:10]


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
