"""Building a large concurrent send's batches in a second process (issue 18).

On two cores one interpreter could not both build the next batch (about 20 ms of Python per
1,000 recipients: merge values, link tokens, the JSON of each personalization) and write the
ledger and post the batches in flight: they took turns at the GIL. A SendGrid send of
`SECOND_PROCESS_FROM` recipients or more hands the building to one child process, fed each
batch's recipients and answering with the envelopes and the provider's body. On a first send
it first makes the digests of everyone's link tokens, which the freeze stores before any request,
while this process writes the audience's rows (`token_digests`). Started before the audience is
loaded (`second_process_ahead`), it renders and checks the issue meanwhile, which took this
process about half a second (`IssueToCheck`).

Nothing else moves: the write-ahead, the post and the record stay in the sending process and
come after the batch is built, so a build error (raised here as it was raised there) still
leaves its recipients pending. The child is started with `spawn`, never forked from a process
with threads; it ignores Ctrl-C, which is the sending process's to handle, and it ends with the
send, or as soon as the sending process is gone (killed, say).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import multiprocessing.util
import os
import signal
import sys
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from ..config import Settings
from ..ledger import new_delivery_ids
from ..link_tokens import DigestParts, token_digest
from ..personalize import Envelope, envelope_for, recipient_token
from ..providers import body_builder
from ..providers.base import Batch, Provider
from ..recipient import Recipient, RecipientRow
from ..rendered import RenderedIssue

if TYPE_CHECKING:
    from ..checks.gate import GateDecision

SECOND_PROCESS_FROM = 20_000   # recipients: under this, the child's start (about 0.3 s of CPU) costs more than it saves
AHEAD = 3                      # batches the child builds ahead of the one handed to a worker
BUILT_DURING_FREEZE = 24       # a first send's batches the child builds while this process freezes the audience
DIGEST_PART = 10_000           # addresses per part of a first send's link-token digests: parts of 100,000 (3 MB
                               # of digests, JSON and pickle each) left a million-recipient send 30 MB larger

BuildBody = Callable[[Batch, Settings], Any]   # a provider's build_body: (batch, settings) -> what prepare takes


def make_batch(recipients: Sequence[Any], issue: RenderedIssue, settings: Settings, batch_id: str,
               sandbox: bool, **callbacks: Any) -> Batch:
    """One provider call's batch; each envelope gets a fresh delivery id, stored with its write-ahead."""
    envelopes = [envelope_for(recipient, settings, issue.number, delivery_id) for recipient, delivery_id
                 in zip(recipients, new_delivery_ids(len(recipients)))]
    return Batch(issue=issue, envelopes=envelopes, batch_id=batch_id, lists=_lists_of(envelopes), sandbox=sandbox,
                 **callbacks)


def _lists_of(envelopes: Sequence[Envelope]) -> tuple[str, ...]:
    return tuple(sorted({name for envelope in envelopes for name in envelope.lists}))


@dataclass(frozen=True)
class IssueToCheck:
    """An issue the child renders and checks itself, as the preflight would here (send/workflow.py)."""

    number: int
    force: bool
    rehearsal: bool


class SecondProcess:
    """One child process building batches ahead: `submit` them in order, take each with `batch`.

    It is given the rendered `issue`, or an `IssueToCheck`: it then renders that issue first
    (`rendering`) and checks it while it goes on with other tasks (`decision`).
    """

    def __init__(self, issue: RenderedIssue | IssueToCheck, settings: Settings, build_body: BuildBody,
                 sandbox: bool):
        self.sandbox = sandbox
        self.issue: RenderedIssue | None = None
        self.rendering: Future[RenderedIssue] | None = None
        self._decision: Future[GateDecision] | None = None
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_start_child, initargs=(settings, build_body, sandbox))
        with _main_module_hidden():   # started now: its imports overlap the work of this process
            # The issue (200 kB pickled) is its first task, not an initarg: a start-up message over the
            # pipe's 64 kB held this thread until the child's interpreter was up to read it (0.15 s).
            # A task is written by the pool's own thread; the one worker takes its tasks in order.
            if isinstance(issue, IssueToCheck):
                self.rendering = self._pool.submit(_render_and_check_in_child, issue)
            else:
                self.issue = issue
                self._pool.submit(_receive_issue, issue)
        _only_the_child_writes_answers(self._pool)
        self._ahead: dict[int, tuple[Sequence[Any], Future]] = {}   # index -> (its recipients, its build)

    def _rendered(self) -> RenderedIssue:
        if self.issue is None:   # rendered by the child: its answer
            assert self.rendering is not None
            self.issue = self.rendering.result()
        return self.issue

    def decision(self) -> Future[GateDecision]:
        """The checks' decision on the issue the child rendered. Asked for only when wanted: a task sent
        earlier (a first send's digests) never waits behind SpamAssassin, which can take seconds."""
        if self._decision is None:
            self._decision = self._pool.submit(_decision_in_child)
        return self._decision

    def submit(self, index: int, recipients: Sequence[Recipient]) -> None:
        if index not in self._ahead:   # as plain tuples (recipient.RecipientRow)
            self._ahead[index] = (recipients, self._pool.submit(_build_in_child, [r.row() for r in recipients]))

    def build_first(self, chunks: Iterable[Sequence[Any]]) -> None:
        """A first send's first batches, built while this process freezes the audience (after the digests
        it needs for that): the child would otherwise start on them only when the first requests are due,
        and then build more slowly than four workers post (about 20 ms a batch against 15). The checks'
        decision, if this process makes it, is asked first: the freeze waits for it, never behind these."""
        if self.rendering is not None:
            self.decision()
        for index, chunk in enumerate(islice(chunks, BUILT_DURING_FREEZE), start=1):
            self.submit(index, chunk)

    def keep_if_unchanged(self, chunks: Sequence[Sequence[Any]]) -> None:
        """Forget every batch submitted whose recipients are not, one for one, the send's chunk of that index."""
        for index, (recipients, _) in list(self._ahead.items()):
            chunk = chunks[index - 1] if index <= len(chunks) else ()
            if len(chunk) != len(recipients) or any(a is not b for a, b in zip(chunk, recipients)):
                self.discard(index)

    def token_digests(self, emails: Iterable[str]) -> DigestParts:
        """The link tokens' digests of `emails`, made by the child before any batch while this process
        freezes the audience, in parts of DIGEST_PART (link_tokens.MadeDigests stores them). Each part's
        list of addresses is the one the child is sent: a million are not listed twice."""
        addresses = iter(emails)
        return [(part, self._digests_of(part)) for part in iter(lambda: list(islice(addresses, DIGEST_PART)), [])]

    def _digests_of(self, emails: list[str]) -> Future[bytes] | None:
        """The child's digests of `emails` (32 bytes each, in order); None if it is already gone."""
        try:
            return self._pool.submit(_digests_in_child, emails)
        except (BrokenProcessPool, RuntimeError):   # this process makes them instead (MadeDigests)
            return None

    def discard(self, index: int) -> None:
        """Batch `index` will be built here instead (someone in it was suppressed since it was submitted), or
        anew (its recipients changed)."""
        _, future = self._ahead.pop(index, (None, None))
        if future is not None:
            future.cancel()   # unless the child has started on it

    def batch(self, index: int, batch_id: str) -> tuple[Batch, Any]:
        """Batch `index` (submitted before), as `batch_id`, and its body; its build error is raised here."""
        _, future = self._ahead.pop(index)
        fields, body = future.result()
        envelopes = [Envelope(*envelope) for envelope in fields]
        return Batch(issue=self._rendered(), envelopes=envelopes, batch_id=batch_id, lists=_lists_of(envelopes),
                     sandbox=self.sandbox), body

    def close(self) -> None:
        self._ahead.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _only_the_child_writes_answers(pool: ProcessPoolExecutor) -> None:
    """Close this process's copy of the pipe end the child answers on (the pool keeps it, never writing).

    A child killed half-way through an answer (over 16 KB it goes as a length, then the rest) left the
    pool's reader waiting for the rest for ever while a write end stayed open here: the send hung.
    With the child's end the only one, the reader gets end of file and the pool is broken
    (BrokenProcessPool), as when the child dies between answers. Called once the child is started
    (it holds its own copy); the pool never starts another (one worker, no max_tasks_per_child).
    """
    writer = getattr(getattr(pool, "_result_queue", None), "_writer", None)
    if writer is not None:
        writer.close()


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """While the child is spawned: `spawn` would import the parent's __main__ there again, and a script
    without an `if __name__ == "__main__"` guard (a user's, a benchmark's) would run a second time
    in it. The child needs only campaign's own modules."""
    main = sys.modules["__main__"]
    spec, path = getattr(main, "__spec__", None), main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__spec__ = spec
        if path is not None:
            main.__file__ = path


def worth_a_second_process(recipients: int) -> bool:
    return recipients >= SECOND_PROCESS_FROM


def second_process_for(provider: Provider, issue: RenderedIssue, settings: Settings, sandbox: bool,
                       recipients: int) -> SecondProcess | None:
    """A builder process for a send this large through a provider whose body can be built elsewhere."""
    build_body = getattr(provider, "build_body", None)
    if build_body is None or provider.info.one_at_a_time or provider.concurrency < 2 \
            or not worth_a_second_process(recipients):
        return None
    return _started(issue, settings, build_body, sandbox)


def second_process_ahead(settings: Settings, provider: str, issue: IssueToCheck,
                         sandbox: bool) -> SecondProcess | None:
    """A first send's builder process, started before the audience is loaded, when the recipients file
    has lines enough for one: it renders and checks the issue meanwhile (`SecondProcess.rendering`)."""
    build_body = body_builder(provider, settings)
    if build_body is None or not worth_a_second_process(_lines_in(settings.recipients) - 1):
        return None
    return _started(issue, settings, build_body, sandbox)


def _started(issue: RenderedIssue | IssueToCheck, settings: Settings, build_body: BuildBody,
             sandbox: bool) -> SecondProcess | None:
    try:
        return SecondProcess(issue, settings, build_body, sandbox)
    except (OSError, NotImplementedError):   # no process or semaphore to be had here: build in this one
        return None


def _lines_in(path: Path) -> int:
    """How many lines a file has (0 if it cannot be read: loading it says why): 10 ms for 100,000."""
    try:
        with open(path, "rb") as stream:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b""))
    except OSError:
        return 0


# --- in the child ---------------------------------------------------------------------------------

_CHILD: dict[str, Any] = {}
_as_recipient = tuple.__new__   # a row read as RecipientRow, without the Python call its own __new__ makes


def _start_child(settings: Settings, build_body: BuildBody, sandbox: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the sending process's: it stops between batches
    _CHILD.update(settings=settings, build_body=build_body, sandbox=sandbox)
    parent = multiprocessing.parent_process()
    if parent is not None:   # its work queue never closes (this end holds both ends): watch the parent instead
        threading.Thread(target=_end_with, args=(parent.sentinel,), daemon=True).start()
    # Once its last answer is flushed (the queues' own finalizers come first), it ends without tearing its
    # interpreter down object by object: the send waited 60-120 ms for that when it closed this process.
    multiprocessing.util.Finalize(None, os._exit, args=(0,), exitpriority=-1000)


def _receive_issue(issue: RenderedIssue) -> None:
    _CHILD["issue"] = issue


def _render_and_check_in_child(issue: IssueToCheck) -> RenderedIssue:
    """The issue rendered, and its checks started on a thread of their own (`_decision_in_child`)."""
    from ..checks.gate import gate_decision  # noqa: PLC0415  (the child imports what it needs)
    from ..checks.spam import start_scoring  # noqa: PLC0415
    from ..render import render_issue  # noqa: PLC0415

    settings = _CHILD["settings"]
    rendered = _CHILD["issue"] = render_issue(settings, issue.number)
    decision: Future[GateDecision] = Future()
    _CHILD["decision"] = decision
    spam_run = start_scoring(settings, rendered)

    def check() -> None:
        try:
            decision.set_result(gate_decision(settings, issue.number, force=issue.force, rehearsal=issue.rehearsal,
                                              rendered=rendered, spam_run=spam_run))
        except BaseException as error:   # raised again in the sending process, as the checks there would
            decision.set_exception(error)

    threading.Thread(target=check, daemon=True).start()
    return rendered


def _decision_in_child() -> GateDecision:
    return _CHILD["decision"].result()


def _end_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])   # readable once the sending process is gone, however it ended
    os._exit(0)


def _digests_in_child(emails: list[str]) -> bytes:
    secret = _CHILD["settings"].token_secret
    return b"".join(token_digest(recipient_token(email, secret)) for email in emails)


def _build_in_child(rows: list[tuple]) -> tuple[list[tuple], Any]:
    """The batch's envelopes without their merge values (the body holds them) and its body (which has no
    batch id in it: the sending process names the batch when it takes it)."""
    settings = _CHILD["settings"]
    recipients = [_as_recipient(RecipientRow, row) for row in rows]
    batch = make_batch(recipients, _CHILD["issue"], settings, "", _CHILD["sandbox"])
    body = _CHILD["build_body"](batch, settings)
    return [(e.email, e.name, {}, e.lists, e.line, e.delivery_id) for e in batch.envelopes], body
