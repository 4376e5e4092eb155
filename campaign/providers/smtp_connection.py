"""Opening an SMTP connection, and telling a configuration fault from a passing one.

A configuration fault is something no retry will fix: STARTTLS not offered, a
certificate that does not verify, a login refused, a 5xx greeting or a 5xx to
EHLO. It raises ProviderConfigError at once, naming the host, the setting to
check and the server's reply. A passing fault (refused connection, timeout, a
421 or 454 answer) is tried again with backoff; when the attempts are used up,
that too is a ProviderConfigError: the send cannot go on without a server.
"""

from __future__ import annotations

import ipaddress
import random
import smtplib
import socket
import ssl
from typing import Callable

from ..config import SmtpSettings
from ..errors import ProviderAuthError, ProviderConfigError

END_OF_DATA = b"\r\n.\r\n"
CONNECT_ATTEMPTS = 5          # opening a connection, first try included
CONNECT_BACKOFF = 2.0         # seconds: the first wait's ceiling, doubled each time (full jitter)
LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


class _Timed:
    """smtplib with two timeouts: `timeout` for connecting and commands, `data_timeout` for the
    reply after the message body (RFC 5321 4.5.3.2.6 allows the server ten minutes there).
    Remembers whether the end of the message went out, so a drop after it is not resent."""

    command_timeout = 30.0
    data_timeout = 600.0
    data_ended = False

    def send(self, s):
        self.data_ended = False
        super().send(s)  # type: ignore[misc]
        if isinstance(s, bytes) and s.endswith(END_OF_DATA):
            self.data_ended = True
            if self.sock is not None:  # type: ignore[attr-defined]
                self.sock.settimeout(self.data_timeout)  # type: ignore[attr-defined]

    def data(self, msg):
        try:
            return super().data(msg)  # type: ignore[misc]
        finally:
            if self.sock is not None:  # type: ignore[attr-defined]
                self.sock.settimeout(self.command_timeout)  # type: ignore[attr-defined]


class SMTP(_Timed, smtplib.SMTP):
    pass


class SMTPS(_Timed, smtplib.SMTP_SSL):
    pass


Connection = SMTP | SMTPS


class Unreachable(Exception):
    """This attempt to open (or keep) the connection failed in a way a later attempt may not."""


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def refuse_password_in_clear(config: SmtpSettings) -> None:
    """security = "none" sends the login in plain text: only to this machine."""
    if config.security == "none" and config.username and not is_loopback(config.host):
        raise ProviderConfigError(
            f"refusing to send the SMTP password in the clear to {config.host}: set SMTP_SECURITY "
            "([smtp] security) to starttls or tls, or leave SMTP_USERNAME empty",
            host=config.host, setting="SMTP_SECURITY")


def open_connection(config: SmtpSettings, sleep: Callable[[float], None], rng: random.Random) -> Connection:
    """A connected, secured and logged-in connection, after up to CONNECT_ATTEMPTS tries."""
    where = f"{config.host}:{config.port}"
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            return _open_once(config, where)
        except Unreachable as error:
            failure: BaseException = error
        except (smtplib.SMTPException, OSError) as error:
            failure = classify_open_error(error, where)
            if isinstance(failure, ProviderConfigError):
                raise failure from None
        if attempt == CONNECT_ATTEMPTS:
            raise ProviderConfigError(
                f"cannot reach SMTP server {where} after {attempt} attempts ({failure}): check SMTP_HOST "
                "and SMTP_PORT, and that the server is running", host=where, setting="SMTP_HOST",
                reply=str(failure))
        sleep(rng.uniform(0, CONNECT_BACKOFF * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")


def _open_once(config: SmtpSettings, where: str) -> Connection:
    context = ssl.create_default_context()
    connection: Connection | None = None
    try:
        if config.security == "tls":
            connection = SMTPS(config.host, config.port, timeout=config.timeout, context=context)
        else:
            connection = SMTP(config.host, config.port, timeout=config.timeout)
        connection.command_timeout, connection.data_timeout = config.timeout, config.data_timeout
        _hello(connection, where)
        if config.security == "starttls":
            _starttls(connection, context, where)
        if config.username:
            _login(connection, config, where)
        return connection
    except BaseException:
        if connection is not None:
            connection.close()
        raise


def _hello(connection: Connection, where: str) -> None:
    code, reply = connection.ehlo()
    if not 200 <= code < 300:
        code, reply = connection.helo()
    if 200 <= code < 300:
        return
    if 500 <= code < 600:
        raise ProviderConfigError(
            f"SMTP server {where} refused EHLO and HELO ({code} {text(reply)}): check SMTP_HOST (is it the "
            "server meant for you?) and that this machine may send through it",
            host=where, setting="SMTP_HOST", reply=f"{code} {text(reply)}")
    raise Unreachable(f"{code} {text(reply)}")


def _starttls(connection: Connection, context: ssl.SSLContext, where: str) -> None:
    if not connection.has_extn("starttls"):
        offered = text(connection.ehlo_resp or b"").splitlines()[1:]
        raise ProviderConfigError(
            f"SMTP server {where} does not offer STARTTLS (its EHLO reply lists: {', '.join(offered) or 'nothing'}): "
            "check SMTP_SECURITY ([smtp] security; 'tls' for port 465) and SMTP_PORT",
            host=where, setting="SMTP_SECURITY", reply=", ".join(offered))
    code, reply = connection.starttls(context=context)
    if code != 220:
        raise ProviderConfigError(
            f"SMTP server {where} refused STARTTLS ({code} {text(reply)}): check SMTP_SECURITY and SMTP_PORT",
            host=where, setting="SMTP_SECURITY", reply=f"{code} {text(reply)}")


def _login(connection: Connection, config: SmtpSettings, where: str) -> None:
    try:
        connection.login(config.username, config.password)
    except smtplib.SMTPAuthenticationError as error:
        reply = f"{error.smtp_code} {text(error.smtp_error)}"
        if error.smtp_code == 454:
            raise Unreachable(reply) from None
        raise ProviderAuthError(
            f"SMTP server {where} refused the login for {config.username} ({reply}): "
            "check SMTP_USERNAME and SMTP_PASSWORD", host=where, setting="SMTP_USERNAME", reply=reply) from None
    except smtplib.SMTPNotSupportedError:
        raise ProviderConfigError(
            f"SMTP server {where} offers no login (AUTH) on this connection: leave SMTP_USERNAME empty, or "
            "check SMTP_SECURITY (many servers offer AUTH only after STARTTLS)",
            host=where, setting="SMTP_USERNAME", reply="no AUTH in the EHLO reply") from None


def classify_open_error(error: BaseException, where: str) -> BaseException:
    """What a failure while opening means: a ProviderConfigError to raise, or Unreachable to retry."""
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = error.verify_message or error.reason or str(error)
        return ProviderConfigError(
            f"TLS with SMTP server {where} failed: the certificate does not verify ({reason}): check SMTP_HOST "
            "(it must be the name on the server's certificate) and SMTP_SECURITY",
            host=where, setting="SMTP_HOST", reply=str(reason))
    if isinstance(error, ssl.SSLError):
        return ProviderConfigError(
            f"TLS with SMTP server {where} failed ({error.reason or error}): check SMTP_SECURITY and SMTP_PORT "
            "(465 speaks TLS from the start: 'tls'; 587 upgrades: 'starttls')",
            host=where, setting="SMTP_SECURITY", reply=str(error.reason or error))
    if isinstance(error, socket.gaierror):
        return ProviderConfigError(
            f"SMTP server {where}: no such host ({error.strerror}): check SMTP_HOST",
            host=where, setting="SMTP_HOST", reply=str(error.strerror))
    if isinstance(error, smtplib.SMTPConnectError) and 500 <= error.smtp_code < 600:
        reply = f"{error.smtp_code} {text(error.smtp_error)}"
        return ProviderConfigError(
            f"SMTP server {where} refused the connection ({reply}): check SMTP_HOST and that this machine "
            "may send through it", host=where, setting="SMTP_HOST", reply=reply)
    return Unreachable(describe(error))


def text(reply) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def describe(error: BaseException) -> str:
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{error.smtp_code} {text(error.smtp_error)}"
    if isinstance(error, socket.timeout):
        return "timed out"
    return str(error) or type(error).__name__
