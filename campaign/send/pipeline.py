"""Batches in flight at once (SendGrid's `[sendgrid] concurrency`), sharing one ledger connection.

The thread that runs the send builds each batch (the provider's body included) and
hands it to a worker thread. The worker writes the batch ahead (committed), calls the
provider (with its retries), and records the answer. Every ledger write, whichever
thread makes it, goes through `LedgerDesk`: one at a time, under one lock, and none
once the send has stopped. SQLite lets go of Python's lock while it works, so on a
machine with two cores the ledger's writes of one batch overlap the building of the
next, instead of taking turns with it.

At most `concurrency` batches are in flight: a crash (SIGKILL) leaves at most
that many batches `in_flight` (unknown on the next run); Ctrl-C twice records
those written ahead unknown at once, and the rest stay pending.

A write that can wait (a batch's answer, kept on the batch's row, written on its
thousand people's rows) is made by a thread of its own, through the desk, while the
batches go (`meanwhile`): a worker waits only for the one row, then takes its next batch.
"""

from __future__ import annotations

import queue
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Generic, Iterable, Iterator, TypeVar

WORKER_HANDOFF = 0.0005   # seconds: sys.setswitchinterval while batches are in flight (see Pipeline.run)

T = TypeVar("T")          # what one batch is (the caller's Batch)
A = TypeVar("A")          # what the provider answered for it


class DeskClosed(Exception):
    """The send stopped: a worker's ledger write was not made (its batch is recorded unknown, or was never
    written ahead and so stays pending)."""


class LedgerDesk:
    """The ledger connection's one door for every thread of a send: one write at a time, none after `close`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._more = threading.Event()

    def call(self, write: Callable[[], None]) -> None:
        """Run `write` now, on this thread, while no other thread writes; DeskClosed once the send stopped."""
        with self._lock:
            if self._closed:
                raise DeskClosed("the send stopped before this ledger write")
            write()

    def close(self, last: Callable[[], None] = lambda: None) -> None:
        """No more writes by anyone; `last` is the final one, made while no worker can write."""
        with self._lock:
            self._closed = True
            last()

    def more_to_do(self) -> None:
        """A write that can wait is there to make (see `meanwhile`)."""
        self._more.set()

    @contextmanager
    def meanwhile(self, write: Callable[[], bool]) -> Iterator[None]:
        """While inside, a thread of its own makes `write()` through the desk (while it returns True) each
        time `more_to_do` is called. An error there stops the thread: the write is left to whoever makes
        it next (Pipeline.run, at the end), where the error is raised."""
        done = threading.Event()

        def writing() -> None:
            while not done.is_set():
                self._more.wait(0.1)   # bounded: `done` is looked at again
                self._more.clear()
                try:
                    while not done.is_set() and self._made(write):
                        pass
                except Exception:
                    return

        thread = threading.Thread(target=writing, name="campaign-ledger-meanwhile", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            self._more.set()
            thread.join()

    def _made(self, write: Callable[[], bool]) -> bool:
        made: list[bool] = []
        self.call(lambda: made.append(write()))
        return made[0]


@dataclass
class Pipeline(Generic[T, A]):
    """Up to `concurrency` batches in flight. This thread builds each batch (`start`) and hands it over
    through a short queue; each of `concurrency` workers takes the next one, looks at it again (`recheck`),
    delivers it (write ahead, post, record) and says what its answer means (`finish`, under the desk's
    lock, in the order answered), then takes the next: no hand-off through this thread between one
    answer and the next request."""

    concurrency: int
    start: Callable[[int, object], T | None]       # (index, chunk) -> a batch built, None: nothing to send
    recheck: Callable[[int, object, T], T | None]   # in the worker, the batch as it goes now (suppressed since?)
    deliver: Callable[[T, LedgerDesk], A]           # in a worker: write ahead, the provider call, record
    finish: Callable[[int, T, A], None]             # in a worker, under the desk's lock: what the answer means
    keep_going: Callable[[], bool]                  # checked before each batch is built and before it goes
    abandon: Callable[[list[T]], None]              # the send dies with these in flight: record them unknown
    meanwhile: Callable[[], bool] = lambda: False   # a write that can wait: made if there is one (see the top)
    desk: LedgerDesk = field(default_factory=LedgerDesk)   # every ledger write of the send goes through it

    def run(self, chunks: Iterable[object]) -> int:
        """Send every chunk while `keep_going`; returns the index of the first chunk not started (0: all).

        An error building a batch (its recipients stay pending) is raised once the batches in flight,
        and any built before it, are answered and recorded; an error rebuilding one in a worker (see
        `recheck`) also leaves pending those not yet taken. Anything that stops the send at once (Ctrl-C
        twice, a worker's bug) hands the batches still in flight to `abandon`, under the desk's lock,
        after which no worker writes.
        """
        desk, work = self.desk, _Work[T]()
        workers = [threading.Thread(target=self._work, args=(work,), name=f"campaign-batch_{n}")
                   for n in range(self.concurrency)]
        switch_interval = sys.getswitchinterval()
        # Each ledger statement and socket call of a worker lets go of the GIL and must win it back
        # from this thread, which builds bodies without pause: at Python's default 5 ms per
        # handoff the workers mostly waited. 0.5 ms keeps them close behind.
        sys.setswitchinterval(WORKER_HANDOFF)
        try:
            with desk.meanwhile(self.meanwhile):
                for worker in workers:
                    worker.start()
                stopped_at = self._launch(chunks, work)
                work.ended = True
                for worker in workers:
                    worker.join()
                work.raise_any()
        except BaseException:
            work.stop()
            desk.close(lambda: self._catch_up(lambda: self.abandon(work.in_flight())))
            raise
        finally:
            sys.setswitchinterval(switch_interval)
        desk.call(self._catch_up)
        return min((index for index in (stopped_at, work.first_not_started) if index), default=0)

    def _launch(self, chunks: Iterable[object], work: "_Work[T]") -> int:
        """Build each batch and queue it for the workers; the index of the first chunk not built (0: all)."""
        for index, chunk in enumerate(chunks, start=1):
            if not self.keep_going() or work.stopping:
                return index
            try:
                batch = self.start(index, chunk)
            except Exception as error:   # its recipients stay pending: raised when the workers are done
                work.failed_to_build(error)
                return 0
            if batch is not None and not work.queue(index, chunk, batch, self.keep_going):
                return index
        return 0

    def _work(self, work: "_Work[T]") -> None:
        """A worker: take the next batch, look at it again, deliver it, say what its answer means; again."""
        try:
            while (taken := work.take()) is not None:
                index, chunk, built = taken
                if not self.keep_going() or work.stopping:   # stopped, paused or halted meanwhile: pending
                    work.not_started(index)
                    continue
                try:
                    batch = self.recheck(index, chunk, built)
                except Exception as error:   # rebuilding it without someone: its recipients stay pending
                    work.failed_to_build(error, index)
                    continue
                if batch is not None:
                    self._deliver(index, batch, work)
        except BaseException as error:   # a worker's bug (or the desk closed under it): the send stops at once
            work.broke(error)

    def _deliver(self, index: int, batch: T, work: "_Work[T]") -> None:
        work.flying[index] = batch
        answer = self.deliver(batch, self.desk)
        self.desk.call(lambda: self.finish(index, batch, answer))
        del work.flying[index]

    def _catch_up(self, first: Callable[[], None] = lambda: None) -> None:
        """`first`, then every write that could wait and is not made yet."""
        first()
        while self.meanwhile():
            pass


LOOKAHEAD = 1   # batches built and waiting for a worker: one, so that a freed worker takes it at once


class _Work(Generic[T]):
    """What this thread and the workers share: the queue of built batches, those in flight, what went wrong."""

    def __init__(self) -> None:
        self._ready: queue.Queue[tuple[int, object, T]] = queue.Queue(maxsize=LOOKAHEAD)
        self.flying: dict[int, T] = {}                # index -> batch taken by a worker and not yet finished
        self.first_not_started = 0
        self.stopping = False                         # no worker takes another batch
        self.ended = False                            # every batch is queued: a worker finding none is done
        self._lock = threading.Lock()
        self._build_error: BaseException | None = None
        self._bug: BaseException | None = None

    def queue(self, index: int, chunk: object, batch: T, keep_going: Callable[[], bool]) -> bool:
        """Hand the batch to the next free worker; False, the batch not started, once the send stops."""
        while not self.stopping:
            try:
                self._ready.put((index, chunk, batch), timeout=0.05)   # bounded: the send may stop meanwhile
                return True
            except queue.Full:
                if not keep_going():
                    break
        self.not_started(index)
        return False

    def take(self) -> tuple[int, object, T] | None:
        """The next batch built; None once there is none to come (or the send stops)."""
        while True:
            try:
                return self._ready.get(timeout=0.05)   # bounded: `ended` and `stopping` are looked at again
            except queue.Empty:
                if self.ended or self.stopping:
                    return None

    def stop(self) -> None:
        """The send stops at once: no worker takes another batch; those queued are not started."""
        self.stopping = True
        while True:
            try:
                self.not_started(self._ready.get_nowait()[0])
            except queue.Empty:
                return

    def not_started(self, index: int) -> None:
        with self._lock:
            self.first_not_started = min(self.first_not_started or index, index)

    def failed_to_build(self, error: BaseException, index: int = 0) -> None:
        """A batch could not be built (`index`: rebuilt by a worker, which then takes no other); raised at the
        end. Built by this thread, the batches queued before it still go."""
        with self._lock:
            self._build_error = self._build_error or error
            self.stopping = self.stopping or bool(index)
        if index:
            self.not_started(index)

    def broke(self, error: BaseException) -> None:
        with self._lock:
            self._bug = self._bug or error
            self.stopping = True

    def in_flight(self) -> list[T]:
        return list(self.flying.values())

    def raise_any(self) -> None:
        """A worker's bug first (the send then stops at once), else an error building a batch."""
        if self._bug is not None:
            raise self._bug
        if self._build_error is not None:
            raise self._build_error
