"""A real SMTP server on 127.0.0.1 for tests: aiosmtpd in a thread, on an ephemeral port.

    server = SmtpServer().start()
    server.refuse("bounce@example.org")             # 550 at RCPT
    server.refuse("busy@example.org", code=451)     # 4xx at RCPT
    server.refuse("ana@example.org", 452, "4.5.3 slow down", times=2)   # twice, then accept
    server.reply_next("DATA", "421 4.3.2 shutting down")   # answer the next MAIL/RCPT/DATA so (not stored)
    server.refuse_hello = "554 5.7.1 not for you"   # the answer to EHLO and HELO
    SmtpServer(login=("user", "secret"))            # require AUTH PLAIN/LOGIN, no TLS needed
    server.drop_next("MAIL")                        # close the connection at the next MAIL FROM
    server.drop_next("DATA")                        # ...or after storing the next message, before answering
    server.drop_next("MAIL", for_good=True)         # ...and stop listening (the server went away)
    ...
    server.messages[0].message["To"]                # what arrived, parsed
    server.most_at_once                             # with a delay: the most connections answered at once
    server.stop()
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class StoredMessage:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)


@dataclass
class _Script:
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    refusals_left: dict[str, int] = field(default_factory=dict)   # address -> times still to refuse
    replies: list[tuple[str, str]] = field(default_factory=list)  # (stage, reply), consumed in order
    drops: list[tuple[str, bool]] = field(default_factory=list)  # (stage, for_good), consumed in order
    login: tuple[str, str] | None = None


class _Handler:
    def __init__(self, server: "SmtpServer"):
        self.server = server

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        if self.server.refuse_hello:
            return [self.server.refuse_hello]
        session.host_name = hostname
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        if self.server.refuse_hello:
            return self.server.refuse_hello
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.server.peers.add(tuple(session.peer))
        scripted = self.server._take_reply("MAIL")
        if scripted:
            return scripted
        if self.server._take_drop("MAIL"):
            server.transport.close()
            return "421 4.4.2 closing connection (scripted drop)"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.server._take_drop("RCPT"):
            server.transport.close()
            return "421 4.4.2 closing connection (scripted drop)"
        scripted = self.server._take_reply("RCPT")
        if scripted:
            return scripted
        refused = self.server._refusal(address.lower())
        if refused:
            code, text = refused
            return f"{code} {text}"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        scripted = self.server._take_reply("DATA")
        if scripted:  # an answer after the whole message, which is not kept
            return scripted
        stored = StoredMessage(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
        with self.server._lock:
            self.server.messages.append(stored)
        if self.server.delay:  # stored, and the client waits for its "250" meanwhile
            with self.server._lock:
                self.server.answering += 1
                self.server.most_at_once = max(self.server.most_at_once, self.server.answering)
            await asyncio.sleep(self.server.delay)
            with self.server._lock:
                self.server.answering -= 1
        if self.server._take_drop("DATA"):
            server.transport.close()  # stored, but the client never hears "250"
            return "421 4.4.2 closing connection (scripted drop)"
        return "250 OK: queued"


class _Controller(Controller):
    """aiosmtpd's Controller, but on an ephemeral port (port=0) that is read back after binding."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpServer:
    """login=(username, password): refuse MAIL until the client has logged in.

    tls="starttls" offers STARTTLS and requires it before anything else (and before
    a login); tls="implicit" speaks TLS from the first byte (port-465 style). Both
    need `certificate`, an ssl.SSLContext for the server side (tests make one with trustme).
    """

    def __init__(self, login: tuple[str, str] | None = None, tls: str | None = None,
                 certificate: "ssl.SSLContext | None" = None):
        if tls not in (None, "starttls", "implicit") or (tls and certificate is None):
            raise ValueError("tls is None, 'starttls' or 'implicit', and TLS needs a certificate context")
        self._tls, self._certificate = tls, certificate
        self.messages: list[StoredMessage] = []
        self.logins: list[str] = []
        self.delay = 0.0                   # seconds between storing a message and answering "250"
        self.refuse_hello = ""             # e.g. "554 5.7.1 not for you": the answer to EHLO and HELO
        self.peers: set[tuple] = set()     # one (host, port) per client connection that sent MAIL
        self.answering = 0                 # messages stored and waiting out `delay` now (one per connection)
        self.most_at_once = 0              # the most that ever waited at once: connections in use together
        self._script = _Script(login=login)
        self._lock = threading.Lock()
        self._controller: _Controller | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        assert self._controller is not None, "start() the server first"
        return self._controller.port

    def start(self) -> "SmtpServer":
        tls = {}
        if self._tls == "starttls":
            tls = {"tls_context": self._certificate, "require_starttls": True}
        elif self._tls == "implicit":
            tls = {"ssl_context": self._certificate}
        self._controller = _Controller(
            _Handler(self), hostname="127.0.0.1", port=0,
            # implicit TLS: the whole connection is TLS, though aiosmtpd does not count it as such for AUTH
            authenticator=self._authenticate, auth_require_tls=self._tls == "starttls",
            auth_required=self._script.login is not None, **tls,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> "SmtpServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- scripting -----------------------------------------------------------------
    def refuse(self, address: str, code: int = 550, text: str = "5.1.1 mailbox unavailable",
               times: int | None = None) -> None:
        """Answer `code text` at RCPT TO for this address (550: rejected, 4xx: try later);
        `times`: only that many times, then accept it."""
        if 400 <= code < 500 and text.startswith("5."):
            text = "4.2.1 try again later"
        with self._lock:
            self._script.refused[address.lower()] = (code, text)
            if times is not None:
                self._script.refusals_left[address.lower()] = times

    def reply_next(self, stage: str, reply: str) -> None:
        """Answer the next MAIL, RCPT or DATA (after the message: not stored) with `reply`, e.g. "421 ..."."""
        if stage not in ("MAIL", "RCPT", "DATA"):
            raise ValueError(f"stage must be MAIL, RCPT or DATA, not {stage!r}")
        with self._lock:
            self._script.replies.append((stage, reply))

    def _take_reply(self, stage: str) -> str:
        with self._lock:
            if self._script.replies and self._script.replies[0][0] == stage:
                return self._script.replies.pop(0)[1]
        return ""

    def _refusal(self, address: str) -> tuple[int, str] | None:
        with self._lock:
            refused = self._script.refused.get(address)
            left = self._script.refusals_left.get(address)
            if refused is None or left is None:
                return refused
            if left <= 0:
                return None
            self._script.refusals_left[address] = left - 1
            return refused

    def drop_next(self, stage: str = "MAIL", *, for_good: bool = False) -> None:
        """Close the connection at the next MAIL, RCPT or DATA (DATA: after storing the message).

        for_good=True: also stop accepting connections, as a server that went away.
        """
        if stage not in ("MAIL", "RCPT", "DATA"):
            raise ValueError(f"stage must be MAIL, RCPT or DATA, not {stage!r}")
        with self._lock:
            self._script.drops.append((stage, for_good))

    def _take_drop(self, stage: str) -> bool:
        """Called from the server's event loop: is this the scripted moment to hang up?"""
        with self._lock:
            if not self._script.drops or self._script.drops[0][0] != stage:
                return False
            _, for_good = self._script.drops.pop(0)
        if for_good and self._controller is not None and self._controller.server is not None:
            self._controller.server.close()  # stop listening; this connection is closed by the caller
        return True

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self._script.login is None:
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        ok = (login, password) == self._script.login
        if ok:
            self.logins.append(login)
        return AuthResult(success=ok, handled=False)

    # --- reading back ----------------------------------------------------------------
    def recipients(self) -> list[str]:
        with self._lock:
            return [rcpt for stored in self.messages for rcpt in stored.rcpt_tos]

    def received(self) -> "Counter[str]":
        """How many messages arrived per address (a newsletter must never send two)."""
        return Counter(self.recipients())
