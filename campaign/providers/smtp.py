"""SMTP with the standard library: one connection, reused for every message of every batch.

One message per recipient (mime.build_message). Per message:

* 5xx at RCPT or DATA: that recipient is REJECTED and the batch goes on;
* 4xx: FAILED (a later retry may work);
* the connection dropped before the message was handed over: reopen once and
  send that message again; dropped after the whole message was written: UNKNOWN
  (the server may have taken it, so it is not sent twice).

Nothing from a batch is lost when the server goes away half-way: recipients
already answered keep their status, the rest are FAILED. Only a failure before
the first message (login refused, server unreachable) raises.
"""

from __future__ import annotations

import smtplib
import socket
import ssl

from ..config import Settings
from ..errors import CampaignError, ProviderAuthError, ProviderError, TransientProviderError
from ..mime import UnusableAddress, build_message
from .base import Batch, DeliveryResult, ProviderInfo, Status

INFO = ProviderInfo(name="smtp", max_batch_size=100, one_at_a_time=True)
END_OF_DATA = b"\r\n.\r\n"


class _WatchedData:
    """Remembers whether the end of a message's DATA went out on this connection."""

    data_ended = False

    def send(self, s):
        self.data_ended = False
        super().send(s)
        if isinstance(s, bytes) and s.endswith(END_OF_DATA):
            self.data_ended = True


class _SMTP(_WatchedData, smtplib.SMTP):
    pass


class _SMTPS(_WatchedData, smtplib.SMTP_SSL):
    pass


class _Unreachable(Exception):
    """Could not open (or log in to) the server: nothing of the message went out."""


class SmtpProvider:
    """Provider for any SMTP server (STARTTLS, implicit TLS or plain; optional login)."""

    info = INFO

    def __init__(self, settings: Settings):
        self._settings = settings
        self._smtp = settings.smtp
        self._where = f"{self._smtp.host}:{self._smtp.port}"
        self._connection: _SMTP | _SMTPS | None = None

    def send(self, batch: Batch) -> list[DeliveryResult]:
        results: list[DeliveryResult] = []
        envelopes = list(batch.envelopes)
        for index, envelope in enumerate(envelopes):
            if batch.on_sending is not None:
                batch.on_sending(envelope)
            try:
                result = self._send_one(batch, envelope)
            except (_Unreachable, CampaignError) as error:
                if not results:  # nothing of this batch went out: the whole batch fails
                    if isinstance(error, _Unreachable):
                        raise TransientProviderError(str(error)) from None
                    raise
                # some went out: keep their results, the rest did not go
                reason = f"{error}; not sent"
                results += [DeliveryResult(e.email, Status.FAILED, error=reason) for e in envelopes[index:]]
                break
            results.append(result)
            if batch.on_result is not None:
                batch.on_result(result)
        return results

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                connection.close()

    # --- one message ---------------------------------------------------------------
    def _send_one(self, batch: Batch, envelope) -> DeliveryResult:
        sender = self._settings.sender
        try:
            message = build_message(batch.issue, envelope, sender=sender, links=self._settings.links)
        except UnusableAddress as error:
            return DeliveryResult(envelope.email, Status.REJECTED, error=str(error))
        message_id = message["Message-ID"]
        for attempt in (1, 2):
            connection = self._open()
            try:
                connection.send_message(message, from_addr=sender.from_email, to_addrs=[envelope.email])
                return DeliveryResult(envelope.email, Status.ACCEPTED, message_id=message_id)
            except smtplib.SMTPRecipientsRefused as error:
                code, reply = error.recipients.get(envelope.email, next(iter(error.recipients.values())))
                return self._refused(envelope.email, "refused the recipient", code, reply)
            except smtplib.SMTPDataError as error:
                return self._refused(envelope.email, "refused the message", error.smtp_code, error.smtp_error)
            except smtplib.SMTPSenderRefused as error:
                self._drop()
                if error.smtp_code == 421 and attempt == 1:
                    continue  # the server is closing the connection: reopen and try again
                if 400 <= error.smtp_code < 500:
                    return self._refused(envelope.email, "refused the sender", error.smtp_code, error.smtp_error)
                raise ProviderError(
                    f"SMTP server {self._where} refused the sender {sender.from_email} "
                    f"({error.smtp_code} {_text(error.smtp_error)}): check [sender] from_email"
                ) from None
            except (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException, OSError) as error:
                data_ended = connection.data_ended
                self._drop()
                if isinstance(error, smtplib.SMTPResponseException) and error.smtp_code != 421:
                    return self._refused(envelope.email, "answered", error.smtp_code, error.smtp_error)
                if data_ended:
                    return DeliveryResult(
                        envelope.email, Status.UNKNOWN, message_id=message_id,
                        error=f"SMTP server {self._where} dropped the connection after the message was "
                              f"sent ({_describe(error)}); it may or may not have been accepted",
                    )
                if attempt == 2:
                    return DeliveryResult(
                        envelope.email, Status.FAILED,
                        error=f"SMTP server {self._where} dropped the connection twice ({_describe(error)})",
                    )
        raise AssertionError("unreachable")

    def _refused(self, email: str, what: str, code: int, reply) -> DeliveryResult:
        if code == 421:  # smtplib has closed the connection
            self._drop()
        status = Status.REJECTED if 500 <= code < 600 else Status.FAILED
        return DeliveryResult(email, status, error=f"SMTP server {self._where} {what}: {code} {_text(reply)}")

    # --- the connection ------------------------------------------------------------
    def _open(self) -> _SMTP | _SMTPS:
        if self._connection is not None:
            return self._connection
        config = self._smtp
        context = ssl.create_default_context()
        try:
            if config.security == "tls":
                connection = _SMTPS(config.host, config.port, timeout=config.timeout, context=context)
            else:
                connection = _SMTP(config.host, config.port, timeout=config.timeout)
                if config.security == "starttls":
                    connection.starttls(context=context)
            if config.username:
                connection.login(config.username, config.password)
        except smtplib.SMTPAuthenticationError as error:
            raise ProviderAuthError(
                f"SMTP server {self._where} refused the login for {config.username} "
                f"({error.smtp_code} {_text(error.smtp_error)}): check SMTP_USERNAME and SMTP_PASSWORD"
            ) from None
        except smtplib.SMTPNotSupportedError as error:
            raise ProviderError(
                f"SMTP server {self._where} does not support {'STARTTLS' if 'STARTTLS' in str(error) else 'login'}: "
                f"check SMTP_SECURITY and SMTP_USERNAME ({error})"
            ) from None
        except ssl.SSLError as error:
            raise ProviderError(
                f"TLS with SMTP server {self._where} failed ({error.reason or error}): check SMTP_SECURITY and SMTP_PORT"
            ) from None
        except (smtplib.SMTPException, OSError) as error:
            raise _Unreachable(f"cannot reach SMTP server {self._where} ({_describe(error)})") from None
        self._connection = connection
        return connection

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def _text(reply) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _describe(error: BaseException) -> str:
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{error.smtp_code} {_text(error.smtp_error)}"
    if isinstance(error, socket.timeout):
        return "timed out"
    return str(error) or type(error).__name__
