"""The suppression endpoints of the SendGrid stand-in (sendgrid_server.py routes GETs here).

Serves `GET /v3/suppression/{bounces,spam_reports,invalid_emails,unsubscribes,blocks}` with
`start_time`, `end_time`, `limit` and `offset`, and `GET /v3/asm/groups/{id}/suppressions`, from
lists a test fills:

    server.suppressions.add("bounces", "ana@example.org", created=1764000000, reason="550 5.1.1 ...")
    server.suppressions.add_to_group(42, "bo@example.org")
    server.suppressions.throttle(after=3)      # the 4th suppression request gets a 429, once

Every answer is validated against the 200 response schema of its path in
../shared/vendor/sendgrid-oai/tsg_suppressions_v3.json before it is sent; what fails is kept in
`errors` (a test asserts it stays empty), so the stand-in cannot drift from SendGrid's shapes.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections import deque
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

LISTS = ("bounces", "spam_reports", "invalid_emails", "unsubscribes", "blocks")
LIST_PATH = re.compile(r"^/v3/suppression/(" + "|".join(LISTS) + r")$")
GROUP_PATH = re.compile(r"^/v3/asm/groups/(\d+)/suppressions$")
DEFAULT_LIMIT = 500


def serves(path: str) -> bool:
    path = urlsplit(path).path
    return bool(LIST_PATH.match(path) or GROUP_PATH.match(path))


@functools.lru_cache(maxsize=1)
def load_document(schema_file: Path) -> dict | None:
    return json.loads(schema_file.read_text(encoding="utf-8")) if schema_file.exists() else None


class SuppressionLists:
    """SendGrid's suppression lists as the stand-in keeps them."""

    def __init__(self, schema_file: Path):
        self.schema_file = schema_file
        self.entries: dict[str, list[dict]] = {kind: [] for kind in LISTS}
        self.groups: dict[int, list[str]] = {}
        self.queries: list[tuple[str, dict[str, str]]] = []   # (path, query) of every request, in order
        self.errors: list[str] = []                            # answers that failed schema validation
        self._throttled: deque[int] = deque()                  # request numbers answered 429
        self._lock = threading.Lock()

    # --- filling, from a test -------------------------------------------------------------
    def add(self, kind: str, email: str, created: int, **fields: object) -> None:
        entry: dict = {"created": created, "email": email}
        if kind in ("bounces", "blocks", "invalid_emails"):
            entry.update({"reason": fields.pop("reason", "550 5.1.1 unknown user"),
                          "status": fields.pop("status", "5.1.1")})
            if kind == "invalid_emails":
                entry.pop("status")
        if kind == "spam_reports":
            entry["ip"] = fields.pop("ip", "10.63.202.100")
        entry.update(fields)
        with self._lock:
            self.entries[kind].append(entry)

    def add_to_group(self, group_id: int, email: str) -> None:
        with self._lock:
            self.groups.setdefault(group_id, []).append(email)

    def throttle(self, after: int, times: int = 1) -> None:
        """The (after+1)th suppression request from now on, and the `times - 1` after it, get a 429."""
        with self._lock:
            start = len(self.queries) + after
            self._throttled.extend(range(start, start + times))

    # --- answering ------------------------------------------------------------------------
    def answer(self, method: str, target: str, authorized: bool) -> tuple[int, object, dict]:
        parts = urlsplit(target)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        with self._lock:
            number = len(self.queries)
            self.queries.append((parts.path, query))
            throttled = bool(self._throttled) and self._throttled[0] == number
            if throttled:
                self._throttled.popleft()
        if not authorized:
            return 401, _error("The provided authorization grant is invalid, expired, or revoked"), {}
        if method != "GET":
            return 405, _error("method not allowed"), {}
        if throttled:
            return 429, _error("too many requests"), {"Retry-After": "0.05", "X-RateLimit-Remaining": "0"}
        list_match, group_match = LIST_PATH.match(parts.path), GROUP_PATH.match(parts.path)
        if group_match:
            body: object = list(self.groups.get(int(group_match.group(1)), []))
            schema_path = "/v3/asm/groups/{group_id}/suppressions"
        else:
            assert list_match is not None
            try:
                body = self._page(list_match.group(1), query)
            except ValueError as error:
                return 400, _error(str(error)), {}
            schema_path = parts.path
        self._validate(schema_path, body)
        return 200, body, {}

    def _page(self, kind: str, query: dict[str, str]) -> list[dict]:
        start, end = int(query.get("start_time", 0)), int(query.get("end_time", 2**62))
        limit, offset = int(query.get("limit", DEFAULT_LIMIT)), int(query.get("offset", 0))
        if not 0 < limit <= DEFAULT_LIMIT or offset < 0:
            raise ValueError(f"limit must be 1..{DEFAULT_LIMIT} and offset at least 0")
        with self._lock:
            chosen = sorted((e for e in self.entries[kind] if start <= e["created"] <= end),
                            key=lambda e: (-e["created"], e["email"]))    # newest first, like SendGrid
        return [dict(e) for e in chosen[offset:offset + limit]]

    def _validate(self, path: str, body: object) -> None:
        document = load_document(self.schema_file)
        if document is None:
            return
        import jsonschema

        schema = document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        validator = jsonschema.Draft202012Validator({**document, **schema},
                                                    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        for error in validator.iter_errors(body):
            self.errors.append(f"{path}: {error.message} at {list(error.absolute_path)}")


def _error(message: str) -> dict:
    return {"errors": [{"message": message, "field": None, "help": None}]}
