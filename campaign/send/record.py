"""The ledger's side of one send run: start it, write ahead, record answers, finish it; one send at a time.

Record before you send: each batch (or, for SMTP, each message) is marked `in_flight`
and committed before the provider call, and each answer is committed as it comes.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from .. import ledger
from ..freeze import freeze_audience
from ..audience import Recipient
from ..errors import LedgerError
from ..events import settle_by_stored_events
from ..ledger import FAILED, REFUSED, REJECTED, UNKNOWN, Delivery, Outcome
from ..ledger_schema import transaction
from ..link_tokens import DigestParts
from ..personalize import Envelope
from ..suppressions import add_suppression, suppressed_among
from .plan import SendOptions


def ledger_path(connection: sqlite3.Connection) -> Path | None:
    """The file the connection has open (None for an in-memory database)."""
    path = next((row[2] for row in connection.execute("PRAGMA database_list") if row[1] == "main"), "")
    return Path(path) if path else None


@dataclass(frozen=True)
class LedgerFile:
    """The ledger file a run opened, by device and inode: deleting or replacing it mid-send is noticed."""

    path: Path
    identity: tuple[int, int]

    @classmethod
    def of(cls, connection: sqlite3.Connection) -> "LedgerFile | None":
        path = ledger_path(connection)
        if path is None:
            return None
        status = os.stat(path)
        return cls(path, (status.st_dev, status.st_ino))

    def change(self) -> str:
        """"" while the path still names the file the run opened, else what happened to it."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return "was deleted"
        return "" if (status.st_dev, status.st_ino) == self.identity else "was replaced by another file"

    def rescue(self, connection: sqlite3.Connection, run_id: int) -> Path:
        """Copy the database the run still has open (deleted or not) to a new file beside the path."""
        target = self.path.with_name(f"{self.path.name}.rescued-run-{run_id}")
        number = 1
        while target.exists():
            number += 1
            target = self.path.with_name(f"{self.path.name}.rescued-run-{run_id}-{number}")
        copy = sqlite3.connect(target)
        try:
            connection.backup(copy)
        finally:
            copy.close()
        return target


@contextmanager
def send_lock(connection: sqlite3.Connection) -> Iterator[None]:
    """One send at a time per ledger file; the OS drops the lock when a process dies."""
    path = ledger_path(connection)
    if path is None:
        yield
        return
    with open(f"{path}.send-lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LedgerError(f"another send is running on {path}; wait for it to finish") from None
        yield


@dataclass(frozen=True)
class Left:
    """Recipients of the issue left in one status for one reason (what a send prints at its end)."""

    status: str                    # failed | unknown | refused | rejected
    reason: str
    emails: tuple[str, ...]


@dataclass(frozen=True)
class RunStart:
    """A run just begun: who it still has to send to, and what an earlier run left in flight."""

    record: "RunRecord"
    todo: list[Recipient]
    recovered: list[Delivery]      # left in flight by a dead run, now unknown


def _eligible(connection: sqlite3.Connection, issue: int, kind: str, recipients: Sequence[Recipient],
              eligible: set[str]) -> list[Recipient]:
    """The recipients (all frozen in the ledger) whose row is in an eligible status, in file order.

    Only the smaller side is read: on a first send nobody is excluded, on a late resume few are
    left, so a million-row audience never needs a million-entry {email: status} of its own.
    """
    counts = ledger.counts(connection, issue, kind)
    included = sum(number for status, number in counts.items() if status in eligible)
    if included <= sum(counts.values()) - included:
        wanted = ledger.emails_with_status(connection, issue, kind, eligible)
        return [r for r in recipients if r.email in wanted]
    excluded = ledger.emails_with_status(connection, issue, kind, set(counts) - eligible)
    return [r for r in recipients if r.email not in excluded]


@dataclass(frozen=True)
class RunRecord:
    """One run of one issue's send, as the ledger sees it."""

    connection: sqlite3.Connection
    issue: int
    kind: str                      # real | outbox | sandbox
    provider: str
    run_id: int
    ledger_file: LedgerFile | None = None
    # batch id -> the addresses it was written ahead with, until its answer (see `record`)
    written_ahead: dict[str, frozenset[str]] = field(default_factory=dict, compare=False, repr=False)
    # the batches whose answer is kept on their own row, in the order answered, until `fold` writes it
    unfolded: deque[str] = field(default_factory=deque, compare=False, repr=False)

    @classmethod
    def start(cls, connection: sqlite3.Connection, issue: int, kind: str, provider: str, options: SendOptions,
              recipients: Sequence[Recipient], forced_over: str = "",
              token_of: Callable[[str], str] | None = None,
              before_sending: Callable[[], str] | None = None,
              token_digests: DigestParts | None = None) -> RunStart:
        """Settle crashed runs and in-flight rows, open a run, freeze the audience into pending rows.

        `forced_over`: the preflight findings a --force send goes on despite (recorded with the run).
        `token_of(email)`: the token in a person's links, kept with each new row for the readers' service.
        All of it is one transaction. `before_sending()` is called with all of that written and not yet
        committed (the checks finish meanwhile); it returns `forced_over`, or raises, which leaves the
        ledger as it was.
        """
        with transaction(connection):
            ledger.mark_crashed_runs(connection, issue, kind)
            if options.restart:
                ledger.forget_rehearsal(connection, issue, kind)
            run_id = ledger.start_run(connection, issue, kind, provider, options.describe(), bool(forced_over),
                                      forced_over)
            recovered = ledger.recover_in_flight(connection, issue, kind)
            if recovered and kind == ledger.REAL:   # SendGrid may have said meanwhile what became of them
                settled = settle_by_stored_events(connection, issue, recovered)
                recovered = [row for row in recovered if row.email not in settled]
            freeze_audience(connection, issue, kind, ((r.email, r.name, tuple(r.lists)) for r in recipients),
                            run_id, token_of, emails=(r.email for r in recipients), digests_made=token_digests)
            todo = _eligible(connection, issue, kind, recipients, set(options.eligible()))
            if before_sending is not None:
                ledger.record_forced(connection, run_id, before_sending())
        return RunStart(cls(connection, issue, kind, provider, run_id, LedgerFile.of(connection)), todo, recovered)

    def ledger_gone(self) -> str:
        """"" while the ledger file is the one this run opened; else why the send must stop, and where
        what this run recorded was saved (a send against another file would mail these people again)."""
        change = self.ledger_file.change() if self.ledger_file else ""
        if not change or self.ledger_file is None:
            return ""
        path = self.ledger_file.path
        try:
            rescued = self.ledger_file.rescue(self.connection, self.run_id)
            saved = f"what the ledger held, this run included, is saved in {rescued}"
        except (sqlite3.Error, OSError) as error:
            saved = f"it could not be saved ({error})"
        return (f"the ledger {path} {change} while the send ran: stopped so that nobody is mailed twice; "
                f"{saved}. Put that file back as {path} before sending this issue again")

    def mark_in_flight(self, envelopes: Sequence[Envelope], batch_id: str) -> None:
        """Write ahead message by message (SMTP), with the delivery id each envelope carries to the provider
        (so its events find the row); link tokens were kept when the audience was frozen."""
        ledger.mark_in_flight(self.connection, self.issue, self.kind, [e.email for e in envelopes], self.provider,
                              batch_id, self.run_id, delivery_ids={e.email: e.delivery_id for e in envelopes})

    def write_batch_ahead(self, envelopes: Sequence[Envelope], batch_id: str) -> None:
        """Write a whole request ahead as one row (SendGrid); its answer is recorded with `batch_id`."""
        ledger.write_batch_ahead(self.connection, self.issue, self.kind, self.provider, batch_id, self.run_id,
                                 {e.email: e.delivery_id for e in envelopes})
        self.written_ahead[batch_id] = frozenset(e.email for e in envelopes)

    def suppressed_since(self, emails: Sequence[str], reader: sqlite3.Connection | None = None) -> dict[str, str]:
        """{email: why} of these addresses now suppressed, read through `reader` (default: the ledger's
        own connection; a concurrent send reads through a second one, without waiting for its writers)."""
        found = suppressed_among(reader or self.connection, emails)
        return {email: f"suppressed during the send: {s.reason}{f' ({s.source})' if s.source else ''} "
                       f"at {s.at}" for email, s in found.items()}

    @contextmanager
    def reader(self) -> Iterator[sqlite3.Connection | None]:
        """A second, read-only connection to the ledger file for this run (None: an in-memory ledger)."""
        if self.ledger_file is None:
            yield None
            return
        uri = f"{self.ledger_file.path.resolve().as_uri()}?mode=ro"
        connection = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
        try:
            yield connection
        finally:
            connection.close()

    def mark_skipped(self, reasons: dict[str, str]) -> None:
        ledger.mark_skipped(self.connection, self.issue, self.kind, reasons)

    def record(self, outcomes: Iterable[Outcome], batch_id: str | None = None, fold_later: bool = False) -> None:
        """The answer; `batch_id`: of a batch written ahead whole, which it closes (one answer for all the
        addresses this run wrote it ahead with is kept on its ledger row and written from there: at once,
        or with `fold_later` by `fold`, the batch reading in flight meanwhile)."""
        carried = self.written_ahead.pop(batch_id, None) if batch_id else None
        kept = ledger.record_outcomes(self.connection, self.issue, self.kind, outcomes, batch_id, carried,
                                      fold=not fold_later)
        if kept and batch_id:
            self.unfolded.append(batch_id)

    def fold(self) -> bool:
        """Write the oldest answer kept on its batch's row on its people's rows; False when none is left.
        (One the process dies before writing is written when the next run starts.)"""
        if not self.unfolded:
            return False
        ledger.fold_answer(self.connection, self.unfolded.popleft())
        return True

    def finish(self, outcome: str, message: str) -> None:
        while self.fold():
            pass
        ledger.finish_run(self.connection, self.run_id, outcome, message)

    def crashed(self, error: BaseException) -> None:
        try:
            while self.fold():
                pass
        except sqlite3.Error:   # the next run writes them: the crash is what is reported
            pass
        ledger.finish_run(self.connection, self.run_id, "crashed", f"{type(error).__name__}: {error}")

    def counts(self) -> dict[str, int]:
        return ledger.counts(self.connection, self.issue, self.kind)

    def suppress_bounced(self, email: str, reason: str) -> None:
        """The server said the mailbox does not exist (SMTP 5.1.x): never mail it again."""
        if self.kind == ledger.REAL:
            add_suppression(self.connection, email, "bounced", note=reason[:500])

    def left(self) -> tuple[Left, ...]:
        """Who is left failed, unknown, refused or rejected, grouped by the reason recorded."""
        groups: dict[tuple[str, str], list[str]] = {}
        order = (FAILED, UNKNOWN, REFUSED, REJECTED)
        left = ledger.deliveries(self.connection, self.issue, self.kind, order)
        for status in order:
            for delivery in (row for row in left if row.status == status):
                groups.setdefault((status, delivery.last_error or "(no reason recorded)"), []).append(delivery.email)
        return tuple(Left(status, reason, tuple(emails)) for (status, reason), emails in groups.items())

    def unknown(self) -> tuple[str, ...]:
        return tuple(d.email for d in ledger.deliveries(self.connection, self.issue, self.kind, [UNKNOWN]))
