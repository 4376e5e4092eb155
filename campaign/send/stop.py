"""The stop request a send checks between batches, before each SMTP message, and during every backoff wait.

Ctrl-C (SIGINT) and SIGTERM (systemd, cron, `kill`) ask alike: the message or
batch in flight is finished and recorded, then the send stops. `signal_number`
says which one asked, so the CLI exits 130 or 143 (128 + the signal).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Iterator


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(Exception):
    """Raised before handing over the next message once a stop was asked for (nothing of it went out)."""


class StopSignal:
    """Ctrl-C or SIGTERM asks the loop to stop after recording what is in flight; a second one stops now."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_number = 0            # the signal that asked (0: none, or asked by code)

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self) -> None:
        self._event.set()

    def sleep(self, seconds: float) -> None:
        """A backoff wait that a stop request cuts short."""
        self._event.wait(seconds)

    @contextmanager
    def on_interrupt(self) -> Iterator["StopSignal"]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            if self.requested:
                raise KeyboardInterrupt
            self.signal_number = signum
            self.request()

        previous = {number: signal.signal(number, handler) for number in STOP_SIGNALS}
        try:
            yield self
        finally:
            for number, old in previous.items():
                signal.signal(number, old)
