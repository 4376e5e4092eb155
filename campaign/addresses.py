"""Every address checked by email-validator, and remembered between runs.

Validation is four fifths of loading a large recipients file (about 35 µs an
address), and the same addresses come back on every dry run, send and resume.
`AddressBook` remembers each valid address's canonical form in
build/.cache/, keyed by email-validator's version; a remembered form is used
only if it still looks like a plain address, so a damaged or edited cache can
never let a malformed address through.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import email_validator
from email_validator import validate_email

from .files import atomic_writer

CACHE_NAME = f"addresses-v1-email-validator-{email_validator.__version__}.json"
# What a canonical form looks like: no space, no control character, ASCII lower-case domain.
PLAIN_ADDRESS = re.compile(r"^[^\s@\x00-\x1f\x7f\"]+@[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$")


def normalise_email(address: str) -> str:
    """The one canonical form of an address: validated, ASCII domain, lower case.

    Raises EmailNotValidError with email-validator's explanation.
    """
    result = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    return (result.ascii_email or result.normalized).lower()


class AddressBook:
    """normalise_email with a memory: each address as written -> its canonical form."""

    def __init__(self, cache_dir: Path | None = None):
        self.path = cache_dir / CACHE_NAME if cache_dir else None
        self.known: dict[str, str] = self._read()
        self.used: dict[str, str] = {}

    def normalise(self, written: str) -> str:
        canonical = self.known.get(written)
        if not isinstance(canonical, str) or not PLAIN_ADDRESS.match(canonical):
            canonical = normalise_email(written)
        self.used[written] = canonical
        return canonical

    def save(self) -> None:
        """Keep the addresses of this file only (a bounded cache); never fails the load."""
        if self.path is None or self.used == self.known:
            return
        try:
            text = json.dumps(self.used, ensure_ascii=False, separators=(",", ":"))
            with atomic_writer(self.path) as handle:
                handle.write(text)  # one write: json.dump's many small ones cost seconds at 100,000
        except OSError:
            pass  # a read-only build folder only costs speed

    def _read(self) -> dict[str, str]:
        if self.path is None:
            return {}
        try:
            known = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return known if isinstance(known, dict) else {}
