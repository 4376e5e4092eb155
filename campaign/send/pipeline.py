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
from concurrent.futures import Future, ThreadPoolExecutor
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
        self._answered: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self._more = threading.Event()

    def call(self, write: Callable[[], None]) -> None:
        """Run `write` now, on this thread, while no other thread writes; DeskClosed once the send stopped."""
        with self._lock:
            if self._closed:
                raise DeskClosed("the send stopped before this ledger write")
            write()

    def finished(self, future: Future) -> None:
        """A worker's batch is answered (a done-callback: any thread)."""
        self._answered.put(future)

    def next_answer(self) -> Future:
        """Wait until a batch is answered; returns that batch's future."""
        return self._answered.get()

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
    """Up to `concurrency` batches in flight: `start` (build) and `finish` (what an answer means) run on
    this thread, `deliver` (write ahead, post, record) in a worker."""

    concurrency: int
    start: Callable[[int, object], T | None]       # (index, chunk) -> a batch built, None: nothing to send
    recheck: Callable[[int, object, T], T | None]   # the batch built while the workers were busy, as it goes now
    deliver: Callable[[T, LedgerDesk], A]           # in a worker: write ahead, the provider call, record
    finish: Callable[[int, T, A], None]             # on this thread: what the answer means for the send
    keep_going: Callable[[], bool]                  # checked before each new batch (stop, pause, a halt)
    abandon: Callable[[list[T]], None]              # the send dies with these in flight: record them unknown
    meanwhile: Callable[[], bool] = lambda: False   # a write that can wait: made if there is one (see the top)
    desk: LedgerDesk = field(default_factory=LedgerDesk)   # every ledger write of the send goes through it

    def run(self, chunks: Iterable[object]) -> int:
        """Send every chunk while `keep_going`; returns the index of the first chunk not started (0: all).

        An error building a batch (its recipients stay pending) first lets the batches in flight
        finish and be recorded, then is raised. Anything that stops the send at once (Ctrl-C
        twice, a worker's bug) hands the batches still in flight to `abandon`, under the desk's
        lock, after which no worker writes.
        """
        desk = self.desk
        in_flight: dict[Future, tuple[int, T]] = {}
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="campaign-batch")
        switch_interval = sys.getswitchinterval()
        # Each ledger statement and socket call of a worker lets go of the GIL and must win it back
        # from this thread, which builds bodies without pause: at Python's default 5 ms per
        # handoff the workers mostly waited. 0.5 ms keeps them close behind.
        sys.setswitchinterval(WORKER_HANDOFF)
        try:
            with desk.meanwhile(self.meanwhile):
                stopped_at = self._launch(chunks, desk, pool, in_flight)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            desk.close(lambda: self._catch_up(lambda: self.abandon([batch for _, batch in in_flight.values()])))
            raise
        finally:
            sys.setswitchinterval(switch_interval)
        pool.shutdown(wait=True)
        desk.call(self._catch_up)
        return stopped_at

    def _catch_up(self, first: Callable[[], None] = lambda: None) -> None:
        """`first`, then every write that could wait and is not made yet."""
        first()
        while self.meanwhile():
            pass

    def _launch(self, chunks: Iterable[object], desk: LedgerDesk, pool: ThreadPoolExecutor,
                in_flight: dict[Future, tuple[int, T]]) -> int:
        stopped_at = 0
        for index, chunk in enumerate(chunks, start=1):
            if not self.keep_going():
                stopped_at = index
                break
            # Built while every worker is still busy, so that a worker freed takes it at once; looked at
            # again (`recheck`: suppressed since?) once one is free, and kept back if the send stopped.
            ready = self._built(lambda: self.start(index, chunk), desk, in_flight)
            if ready is None:
                continue
            while len(in_flight) >= self.concurrency:
                self._settle(desk, in_flight)
            if not self.keep_going():   # stopped, paused or halted meanwhile: it stays pending
                stopped_at = index
                break
            batch = self._built(lambda: self.recheck(index, chunk, ready), desk, in_flight)
            if batch is None:
                continue
            future = pool.submit(self.deliver, batch, desk)
            in_flight[future] = (index, batch)
            future.add_done_callback(desk.finished)
        while in_flight:
            self._settle(desk, in_flight)
        return stopped_at

    def _built(self, build: Callable[[], T | None], desk: LedgerDesk, in_flight: dict[Future, tuple[int, T]]) -> T | None:
        """`build()`; an error building (its recipients stay pending) is raised once the batches in flight
        are answered and recorded."""
        try:
            return build()
        except Exception:
            while in_flight:
                self._settle(desk, in_flight)
            raise

    def _settle(self, desk: LedgerDesk, in_flight: dict[Future, tuple[int, T]]) -> None:
        future = desk.next_answer()
        index, batch = in_flight[future]
        self.finish(index, batch, future.result())   # a worker's bug is raised here: the batch is abandoned
        del in_flight[future]
