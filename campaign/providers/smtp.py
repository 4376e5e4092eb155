"""SMTP with the standard library: each connection reused message after message.

`[smtp] connections` (default 1) says how many connections send at once: the send loop
hands each of its workers a batch, and each worker thread has a connection of its own.

One message per recipient (mime.build_message), DKIM-signed when [smtp]
dkim_domain is set, sent with MAIL FROM = [smtp] envelope_from (default
[sender] from_email; with `verp`, local+TOKEN@domain naming the recipient).
What each answer becomes:

* a configuration fault (see smtp_connection: no STARTTLS, a certificate that does
  not verify, login refused, no connection after the retries, 5xx to EHLO) and a
  5xx to MAIL FROM raise ProviderConfigError: the send stops, nothing more is tried;
* 5xx at RCPT or after the message: REJECTED; with enhanced status 5.1.x (no such
  mailbox) the result says `bounced`, and the send loop suppresses the address;
* 421 at any stage: the server is closing; reconnect and send that message again;
* 451, 452, 454: wait (exponential backoff with full jitter) and try that message again; it is
  recorded failed during the wait (Batch.on_retrying), which the send's stop request cuts short;
* any other 4xx, or the tries used up: FAILED (a later --retry-failed may work);
* the connection dropped before the message was handed over: reconnect and send it
  again; dropped after the whole message went out: UNKNOWN (never sent twice).

`[smtp] max_per_connection` reconnects after that many messages (on each connection),
`max_per_minute` paces the whole send, every connection together; both for relays that
publish sending limits.
"""

from __future__ import annotations

import random
import re
import smtplib
import threading
import time
from collections import deque
from typing import Callable

from ..config import Settings
from ..dkim_signing import signer_from
from ..errors import ProviderConfigError
from ..mime import POLICY, UnusableAddress, build_message
from ..personalize import Envelope, bounce_token
from . import info
from .base import Batch, DeliveryResult, Status
from .smtp_connection import Connection, describe, open_connection, refuse_password_in_clear, text

INFO = info.SMTP
MESSAGE_ATTEMPTS = 5            # tries per message (421, 45x, a drop before the message went out)
BACKOFF = 1.0                   # seconds: the first 45x wait's ceiling, doubled each time
MAX_BACKOFF = 60.0
THROTTLED = (451, 452, 454)
NO_SUCH_MAILBOX = re.compile(r"^\s*5\.1\.\d{1,3}\b")


class _Retry(Exception):
    """This message did not go out; try it again (after a backoff wait, or at once)."""

    def __init__(self, reason: str, backoff: bool):
        super().__init__(reason)
        self.backoff = backoff


class Pacer:
    """At most `limit` messages in any 60 seconds, however many connections send them (0: no limit).

    Each turn is booked under a lock before its wait, so two connections never both take the last
    place of a minute."""

    def __init__(self, limit: int, clock: Callable[[], float], sleep: Callable[[float], None]):
        self._limit, self._clock, self._sleep = limit, clock, sleep
        self._booked: deque[float] = deque()   # when the last `limit` turns were (or will be) taken
        self._lock = threading.Lock()

    def wait_turn(self, sleep: Callable[[float], None] | None = None) -> None:
        """Wait for a place in the minute (with `sleep`, default the provider's)."""
        if not self._limit:
            return
        with self._lock:
            now = self._clock()
            at = max(now, self._booked[0] + 60) if len(self._booked) >= self._limit else now
            self._booked.append(at)
            if len(self._booked) > self._limit:
                self._booked.popleft()
        if at > now:
            (sleep or self._sleep)(at - now)


class _Lane:
    """One worker thread's connection, and how many messages it carried."""

    connection: Connection | None = None
    sent = 0


class SmtpProvider:
    """Provider for any SMTP server (STARTTLS, implicit TLS or plain; optional login)."""

    info = INFO

    def __init__(self, settings: Settings, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None):
        refuse_password_in_clear(settings.smtp)
        self._settings = settings
        self._smtp = settings.smtp
        self.concurrency = self._smtp.connections    # batches in flight at once, one connection each
        self._where = f"{self._smtp.host}:{self._smtp.port}"
        self._signer = signer_from(settings.smtp, settings.root)
        self._envelope_from = self._smtp.envelope_from or settings.sender.from_email
        self._sleep, self._rng = sleep, rng or random.Random()
        self._pacer = Pacer(self._smtp.max_per_minute, clock, sleep)
        self._local = threading.local()               # this thread's _Lane
        self._lanes: list[_Lane] = []                 # every thread's, for close()
        self._lanes_lock = threading.Lock()

    def send(self, batch: Batch) -> list[DeliveryResult]:
        """One result per envelope. A configuration fault raises ProviderConfigError mid-batch:
        the messages already answered were reported through batch.on_result."""
        results: list[DeliveryResult] = []
        for envelope in batch.envelopes:
            # Its turn under max_per_minute comes first (a wait of up to a minute): a stop asked
            # meanwhile finds it not yet written ahead, so it stays pending instead of unknown.
            self._pacer.wait_turn(batch.wait)
            if batch.on_sending is not None:
                batch.on_sending(envelope)
            result = self._send_one(batch, envelope)
            results.append(result)
            if batch.on_result is not None:
                batch.on_result(result)
        return results

    def prepare(self, batch: Batch, body: object = None) -> None:
        pass   # each message is built as it goes

    def close(self) -> None:
        """Say goodbye on every connection (each worker has finished its batch)."""
        with self._lanes_lock:
            lanes = list(self._lanes)
        for lane in lanes:
            self._quit(lane)

    @staticmethod
    def _quit(lane: _Lane) -> None:
        connection, lane.connection = lane.connection, None
        if connection is not None:
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                connection.close()

    # --- one message ---------------------------------------------------------------
    def _send_one(self, batch: Batch, envelope: Envelope) -> DeliveryResult:
        settings = self._settings
        try:
            message = build_message(batch.issue, envelope, sender=settings.sender, links=settings.links)
        except UnusableAddress as error:
            return DeliveryResult(envelope.email, Status.REJECTED, error=str(error))
        message_id = str(message["Message-ID"])
        data = message.as_bytes(policy=POLICY)
        if self._signer is not None:
            data = self._signer.sign(data)
        reason = ""
        for attempt in range(1, MESSAGE_ATTEMPTS + 1):
            try:
                return self._attempt(envelope.email, data, message_id)
            except _Retry as retry:
                reason = str(retry)
                if attempt < MESSAGE_ATTEMPTS:
                    self._before_retry(batch, envelope, retry, attempt)
        return DeliveryResult(envelope.email, Status.FAILED,
                              error=f"{reason} (gave up after {MESSAGE_ATTEMPTS} attempts)")

    def _before_retry(self, batch: Batch, envelope: Envelope, retry: _Retry, attempt: int) -> None:
        """The message did not go out (a 4xx, a drop before it was sent). It is recorded failed while it
        waits (the backoff, then its turn under max_per_minute), then written ahead again (on_sending,
        which raises StopRequested once a stop was asked: it then stays failed, for a plain resume)."""
        if batch.on_retrying is not None:
            batch.on_retrying(envelope, str(retry))
        if retry.backoff:
            (batch.wait or self._sleep)(self._rng.uniform(0, min(MAX_BACKOFF, BACKOFF * 2 ** (attempt - 1))))
        self._pacer.wait_turn(batch.wait)
        if batch.on_sending is not None:
            batch.on_sending(envelope)

    def _attempt(self, email: str, data: bytes, message_id: str) -> DeliveryResult:
        """Send once; a result, or _Retry, or ProviderConfigError."""
        connection = self._open()
        try:
            connection.sendmail(self._mail_from(email), [email], data)
        except smtplib.SMTPSenderRefused as error:
            return self._answer(email, "refused the sender", error.smtp_code, error.smtp_error, sender=True)
        except smtplib.SMTPRecipientsRefused as error:
            code, reply = error.recipients.get(email, next(iter(error.recipients.values())))
            return self._answer(email, "refused the recipient", code, reply)
        except smtplib.SMTPDataError as error:
            return self._answer(email, "refused the message", error.smtp_code, error.smtp_error)
        except (smtplib.SMTPException, OSError) as error:
            data_ended = connection.data_ended
            self._drop()
            if data_ended:
                return DeliveryResult(
                    email, Status.UNKNOWN, message_id=message_id,
                    error=f"SMTP server {self._where} dropped the connection after the message was "
                          f"sent ({describe(error)}); it may or may not have been accepted")
            raise _Retry(f"SMTP server {self._where} dropped the connection ({describe(error)})",
                         backoff=False) from None
        self._sent()
        return DeliveryResult(email, Status.ACCEPTED, message_id=message_id)

    def _answer(self, email: str, what: str, code: int, reply, *, sender: bool = False) -> DeliveryResult:
        said = f"{code} {text(reply)}"
        if code == 421:   # smtplib has closed the connection
            self._drop()
            raise _Retry(f"SMTP server {self._where} is closing the connection ({said})", backoff=False)
        if code in THROTTLED:
            raise _Retry(f"SMTP server {self._where} {what}: {said}", backoff=True)
        if sender and 500 <= code < 600:
            setting = "SMTP_SECURITY and SMTP_USERNAME" if code == 530 else "[smtp] envelope_from ([sender] from_email)"
            raise ProviderConfigError(
                f"SMTP server {self._where} refused the sender {self._mail_from(email)} ({said}): check {setting}",
                host=self._where, setting=setting, reply=said)
        if 500 <= code < 600:
            return DeliveryResult(email, Status.REJECTED, error=f"SMTP server {self._where} {what}: {said}",
                                  bounced=bool(NO_SUCH_MAILBOX.match(text(reply))) and what.endswith("recipient"))
        return DeliveryResult(email, Status.FAILED, error=f"SMTP server {self._where} {what}: {said}")

    def _mail_from(self, email: str) -> str:
        if not self._smtp.verp:
            return self._envelope_from
        local, _, domain = self._envelope_from.rpartition("@")
        return f"{local}+{bounce_token(email, self._settings.token_secret)}@{domain}"

    # --- this thread's connection and its limit ---------------------------------------
    def _lane(self) -> _Lane:
        lane = getattr(self._local, "lane", None)
        if lane is None:
            lane = self._local.lane = _Lane()
            with self._lanes_lock:
                self._lanes.append(lane)
        return lane

    def _open(self) -> Connection:
        lane = self._lane()
        if lane.connection is None:
            lane.connection = open_connection(self._smtp, self._sleep, self._rng)
            lane.sent = 0
        return lane.connection

    def _sent(self) -> None:
        lane = self._lane()
        lane.sent += 1
        limit = self._smtp.max_per_connection
        if limit and lane.sent >= limit:
            self._quit(lane)

    def _drop(self) -> None:
        lane = self._lane()
        connection, lane.connection = lane.connection, None
        if connection is not None:
            connection.close()
