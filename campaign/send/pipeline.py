"""Batches in flight at once (SendGrid's `[sendgrid] concurrency`), with one ledger writer.

The thread that runs the send owns the ledger connection and does every ledger
write: it builds each batch, writes it ahead (committed), hands it to a worker
thread, and records each answer as it comes, in whatever order the answers
arrive. A worker only calls the provider; the few ledger writes its retry loop
makes (the "retrying" note before a wait, the write-ahead again before a retry)
are handed to the owning thread through `LedgerDesk` and waited for, so they
still happen before the retry's request, and never two at once.

At most `concurrency` batches are in flight: a crash (SIGKILL) leaves at most
that many batches `in_flight` (unknown on the next run); Ctrl-C twice records
them unknown at once.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")          # what one batch is (the caller's Batch)
A = TypeVar("A")          # what the provider answered for it


class DeskClosed(Exception):
    """The send stopped: a worker's ledger write was not made (its batch is recorded unknown)."""


class LedgerDesk:
    """Runs ledger writes asked for by worker threads on the one thread that owns the connection."""

    def __init__(self) -> None:
        self._events: queue.SimpleQueue[tuple[Callable[[], None] | None, Future]] = queue.SimpleQueue()
        self._owner = threading.get_ident()
        self._lock = threading.Lock()
        self._closed = False

    def call(self, write: Callable[[], None]) -> None:
        """Run `write` on the owning thread and wait for it (at once when called there)."""
        if threading.get_ident() == self._owner:
            write()
            return
        done: Future = Future()
        with self._lock:
            if self._closed:
                raise DeskClosed("the send stopped before this ledger write")
            self._events.put((write, done))
        done.result()

    def finished(self, future: Future) -> None:
        """A worker's batch is answered (a done-callback: any thread)."""
        self._events.put((None, future))

    def next_answer(self) -> Future:
        """Serve ledger writes until a batch is answered; returns that batch's future."""
        while True:
            write, future = self._events.get()
            if write is None:
                return future
            try:
                write()
            except BaseException as error:   # the worker sees it; a KeyboardInterrupt also stops the send
                future.set_exception(error if isinstance(error, Exception) else DeskClosed(str(error)))
                if not isinstance(error, Exception):
                    raise
            else:
                future.set_result(None)

    def close(self) -> None:
        """No more writes: the ones waiting (and any asked later) fail with DeskClosed."""
        with self._lock:
            self._closed = True
            while True:
                try:
                    write, future = self._events.get_nowait()
                except queue.Empty:
                    return
                if write is not None:
                    future.set_exception(DeskClosed("the send stopped before this ledger write"))


@dataclass
class Pipeline(Generic[T, A]):
    """Up to `concurrency` batches in flight; `start` (write ahead) and `finish` (record) on this thread."""

    concurrency: int
    start: Callable[[int, object], T | None]       # (index, chunk) -> a batch written ahead, None: nothing to send
    deliver: Callable[[T, LedgerDesk], A]           # in a worker: the provider call, with its retries
    finish: Callable[[int, T, A], None]             # record the answer
    keep_going: Callable[[], bool]                  # checked before each new batch (stop, pause, a halt)
    abandon: Callable[[list[T]], None]              # the send dies with these in flight: record them unknown

    def run(self, chunks: Iterable[object]) -> int:
        """Send every chunk while `keep_going`; returns the index of the first chunk not started (0: all).

        An error building or writing ahead a batch (its recipients stay pending) first lets the
        batches in flight finish and records them, then is raised. Anything that stops the send
        at once (Ctrl-C twice, a worker's bug) records the batches still in flight as unknown.
        """
        desk = LedgerDesk()
        in_flight: dict[Future, tuple[int, T]] = {}
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="campaign-batch")
        try:
            stopped_at = self._launch(chunks, desk, pool, in_flight)
        except BaseException:
            desk.close()
            pool.shutdown(wait=False, cancel_futures=True)
            self.abandon([batch for _, batch in in_flight.values()])
            raise
        pool.shutdown(wait=True)
        return stopped_at

    def _launch(self, chunks: Iterable[object], desk: LedgerDesk, pool: ThreadPoolExecutor,
                in_flight: dict[Future, tuple[int, T]]) -> int:
        stopped_at = 0
        for index, chunk in enumerate(chunks, start=1):
            while len(in_flight) >= self.concurrency:
                self._settle(desk, in_flight)
            if not self.keep_going():
                stopped_at = index
                break
            try:
                batch = self.start(index, chunk)
            except Exception:
                while in_flight:
                    self._settle(desk, in_flight)
                raise
            if batch is None:
                continue
            future = pool.submit(self.deliver, batch, desk)
            in_flight[future] = (index, batch)
            future.add_done_callback(desk.finished)
        while in_flight:
            self._settle(desk, in_flight)
        return stopped_at

    def _settle(self, desk: LedgerDesk, in_flight: dict[Future, tuple[int, T]]) -> None:
        future = desk.next_answer()
        index, batch = in_flight[future]
        self.finish(index, batch, future.result())   # a worker's bug is raised here: the batch is abandoned
        del in_flight[future]
