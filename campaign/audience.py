"""Recipients CSV -> validated, deduplicated recipients minus suppressions (in progress).

`Recipient` is the contract other stages rely on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Recipient:
    email: str                       # validated and normalised (email-validator)
    name: str
    lists: tuple[str, ...]           # every selected list this person is on, in config order
    fields: Mapping[str, str] = field(default_factory=dict)  # every column but email and lists, cleaned
    line: int = 0                    # line in the recipients file (first occurrence)
