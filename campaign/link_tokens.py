"""Link tokens: which address a token in a sent link stands for.

Each message's unsubscribe and view links carry an opaque token (personalize.recipient_token,
an HMAC of the address), never the address. The readers' service, the unsubscribe inbox and
VERP bounces get the address back with one primary-key lookup of the token's SHA-256 here;
the ledger keeps every new recipient's token when it freezes a send's audience.
"""

from __future__ import annotations

import hashlib
import json
import queue
import sqlite3
import threading
from concurrent.futures import Future
from itertools import islice
from typing import Callable, Iterable, Sequence

from .ledger_schema import transaction


DIGEST_SIZE = hashlib.sha256().digest_size   # 32: MadeDigests' stride


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


def _remember_link_tokens(connection: sqlite3.Connection, pairs: Iterable[tuple[str, str]]) -> int:
    """Keep each (email, token) not kept yet; returns how many were new."""
    _stage(connection, ((token_digest(token), email) for email, token in pairs))
    return _store_staged(connection)


def _stage(connection: sqlite3.Connection, rows: Iterable[tuple[bytes, str]]) -> None:
    """(digest, email) rows into a connection-private table, in any order (appending costs little)."""
    _make_stage(connection)
    connection.executemany("INSERT INTO temp.new_link_tokens (digest, email) VALUES (?, ?)", rows)


def _make_stage(connection: sqlite3.Connection) -> None:
    connection.execute("CREATE TEMP TABLE IF NOT EXISTS new_link_tokens (digest BLOB NOT NULL, email TEXT NOT NULL)")


def _store_staged(connection: sqlite3.Connection) -> int:
    # In digest order, which SQLite's own sorter makes in bounded memory: the index is then filled
    # page by page instead of at random places (a million: 4.9 s in sorted chunks, 3.5 s so).
    stored = connection.execute("INSERT OR IGNORE INTO link_tokens (digest, email) "
                                "SELECT digest, email FROM temp.new_link_tokens ORDER BY digest").rowcount
    connection.execute("DELETE FROM temp.new_link_tokens")
    return stored


def address_for_token(connection: sqlite3.Connection, token: str) -> str | None:
    """The address whose messages carried `token`, or None: one primary-key lookup."""
    row = connection.execute("SELECT email FROM link_tokens WHERE digest = ?", (token_digest(token),)).fetchone()
    return None if row is None else str(row[0])


def index_link_tokens(connection: sqlite3.Connection, token_of: Callable[[str], str]) -> int:
    """Remember the token of every address the ledger has a delivery for (ledgers older than
    the token table, or sends by another version); returns how many were new."""
    emails = [row[0] for row in connection.execute("SELECT DISTINCT email FROM deliveries")]
    with transaction(connection):
        return _remember_link_tokens(connection, ((email, token_of(email)) for email in emails))


TOKEN_CHUNK = 100_000   # addresses per chunk made by TokenDigests


class TokenDigests:
    """The link tokens of many new addresses, made on a thread of their own while the caller's thread
    writes the rows they belong to (SQLite lets go of the GIL while it writes, so both get a core).

    At most two chunks wait at a time, so a million addresses never make a million tuples at once;
    they are staged as they come and stored in digest order at the end, as `_remember_link_tokens` does.
    """

    def __init__(self, emails: Iterable[str], token_of: Callable[[str], str]):
        self._chunks: queue.Queue = queue.Queue(maxsize=2)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._digest, args=(iter(emails), token_of),
                                        name="campaign-link-tokens", daemon=True)
        self._thread.start()
        self._done = False

    def _digest(self, emails: Iterable[str], token_of: Callable[[str], str]) -> None:
        try:
            while not self._stopped.is_set():
                chunk = [(token_digest(token_of(email)), email) for email in islice(emails, TOKEN_CHUNK)]
                self._put(chunk or None)
                if not chunk:
                    return
        except BaseException as error:   # handed to the writing thread, which raises it
            self._put(error)

    def _put(self, item: object) -> None:
        while not self._stopped.is_set():
            try:
                self._chunks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def store(self, connection: sqlite3.Connection, *, wait: bool = False) -> None:
        """Insert the chunks ready now (`wait`: all of them, waiting for the rest)."""
        while not self._done:
            try:
                item = self._chunks.get(block=wait)
            except queue.Empty:
                return
            if isinstance(item, BaseException):
                raise item
            if item is None:
                self._done = True
                _store_staged(connection)
                return
            _stage(connection, item)

    def stop(self) -> None:
        """The caller gave up (its transaction failed): the thread ends without waiting to be read."""
        self._stopped.set()


# Addresses and their tokens' digests being made elsewhere (32 bytes each, in order), in parts; a part
# whose future fails (or is None) is made here.
DigestParts = Sequence[tuple[Sequence[str], "Future[bytes] | None"]]


def _result(made: "Future[bytes] | None") -> bytes | None:
    try:
        return None if made is None else made.result()
    except Exception:   # the process making them is gone (BrokenProcessPool) or failed: made here
        return None


class MadeDigests:
    """The tokens' digests of many new addresses made elsewhere (the builder process, send/builder.py)
    while the caller writes their rows, as TokenDigests makes them on a thread. Each part is staged in
    one statement (or, if it could not be made there, made here), then all are stored in digest order,
    as `_remember_link_tokens` does. In parts: a million addresses in one blob, one JSON text and
    SQLite's copies of both took 200 MB more."""

    def __init__(self, parts: DigestParts, token_of: Callable[[str], str]):
        self._parts, self._token_of = list(parts), token_of

    def store(self, connection: sqlite3.Connection, *, wait: bool = False) -> None:
        """Stage the parts made so far, in order (`wait`: all of them, then store them)."""
        _make_stage(connection)
        while self._parts and (wait or self._parts[0][1] is None or self._parts[0][1].done()):
            emails, made = self._parts.pop(0)
            digests = _result(made)
            if digests is None or len(digests) != DIGEST_SIZE * len(emails):
                _stage(connection, ((token_digest(self._token_of(email)), email) for email in emails))
                continue
            connection.execute("INSERT INTO temp.new_link_tokens (digest, email) SELECT substr(?1, "
                               "address.key * ?3 + 1, ?3), address.value FROM json_each(?2) AS address",
                               (digests, json.dumps(list(emails)), DIGEST_SIZE))
        if wait:
            _store_staged(connection)

    def stop(self) -> None:
        pass
