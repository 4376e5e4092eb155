"""A dry run: everything a send does except sending and recording.

Every message is personalised exactly as a real send would (so a broken merge
field fails here, naming the recipient), no provider is contacted and no
record changes. The result is output/issue-N/dry-run/manifest.csv (who would get
the issue, from which lists, who is skipped or excluded and why; spreadsheet-safe)
and a few complete sample messages as .eml. One manifest row per person, a fixed
handful of files: 100,000 recipients make one larger CSV, not 100,000 files.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Sequence

from .audience import Audience, Recipient, acyclic_bulk
from .errors import CampaignError, OutputError
from .files import make_folder
from .ledger import IN_FLIGHT, UNKNOWN
from .mime import UnusableAddress, build_message
from .merge import BUILTIN_FIELDS, CONTROL_CHARACTERS, escape_html
from .personalize import envelope_for
from .rendered import RenderedIssue
from .send.plan import SendOptions, check_merge_fields
from .spreadsheet import csv_bytes

MANIFEST_COLUMNS = ("line", "email", "name", "lists", "action", "reason")
SAMPLES = 3
# The built-in fields made from the recipient's token (personalize.merge_values): the same length for everyone
LINK_FIELDS = BUILTIN_FIELDS - {"email", "name"}

REASONS = {
    "accepted": "already accepted: never sent twice",
    "rejected": "the provider refused this address earlier: never sent again",
    "refused": "the provider refused the request earlier, nothing was sent: sent only with --retry-rejected",
    "unknown": "delivery unknown: sent only with --resend-unknown",
    "in_flight": "delivery unknown (a send stopped mid-batch): sent only with --resend-unknown",
    "pending": "not yet sent: sent only without --retry-failed",
    "failed": "failed earlier",
    "skipped": "suppressed during an earlier send: sent only if back in the audience",
}


@dataclass(frozen=True)
class DryRunReport:
    directory: Path
    manifest: Path
    samples: tuple[Path, ...]
    would_send: int
    skipped: int                      # in the audience, but the ledger says not this time
    excluded: int                     # not in the audience: invalid, duplicate, suppressed, not on a list
    largest_html: int                 # bytes of the largest personalised HTML (Gmail clips ~102 KB)


@dataclass(frozen=True)
class PreparedDryRun:
    """Everything a dry run writes, made in memory: the send workflow prepares it while the checks run."""

    issue: int
    manifest: bytes                   # the manifest.csv file (spreadsheet.csv_bytes)
    samples: tuple[bytes, ...]        # complete messages, as .eml
    would_send: int
    skipped: int
    excluded: int
    largest_html: int


def dry_run(settings, issue: RenderedIssue, audience: Audience, statuses: dict[str, str],
            options: SendOptions = SendOptions(), *, samples: int = SAMPLES) -> DryRunReport:
    """Check every recipient's merge values as a send would, send none; write the manifest and a few .eml samples.

    `statuses` is the ledger's {email: status} for the send's kind (ledger.statuses_read_only).
    """
    return write_dry_run(settings, prepare_dry_run(settings, issue, audience, statuses, options, samples=samples))


def prepare_dry_run(settings, issue: RenderedIssue, audience: Audience, statuses: dict[str, str],
                    options: SendOptions = SendOptions(), *, samples: int = SAMPLES) -> PreparedDryRun:
    """The manifest, the samples and the counts of a dry run, nothing written yet.

    Filling a message fails only on a merge field the recipient has no value for, and
    check_merge_fields finds those for everyone first, naming their line. The rest of a
    fill cannot fail and its result was thrown away, so not every message is built:
    the samples are, and the largest HTML is measured exactly (largest_html).
    """
    check_merge_fields(issue, audience.recipients)
    with acyclic_bulk():   # rows of strings per person: nothing for the cycle collector to find
        rows, chosen, would_send = _manifest_rows(audience, statuses, options, samples)
        manifest = csv_bytes(MANIFEST_COLUMNS, rows)
        largest = largest_html(settings, issue, audience.recipients)
    messages = tuple(_sample(issue, envelope_for(recipient, settings, issue.number), settings)
                     for recipient in chosen)   # the samples are always written
    return PreparedDryRun(issue=issue.number, manifest=manifest, samples=messages, would_send=would_send,
                          skipped=len(audience.recipients) - would_send, excluded=len(audience.exclusions),
                          largest_html=largest)


def _manifest_rows(audience: Audience, statuses: dict[str, str], options: SendOptions,
                   samples: int) -> tuple[list[tuple[int, str, str, str, str, str]], list[Recipient], int]:
    """The manifest's rows in file order, the people whose messages are the samples, and how many would get one."""
    eligible = set(options.eligible())
    if UNKNOWN in eligible:   # a send first turns rows a dead send left in flight into unknown (RunRecord.start)
        eligible.add(IN_FLIGHT)
    rows: list[tuple[int, str, str, str, str, str]] = []
    sent: list[Recipient] = []        # the first few would-send people: the samples
    spare: list[Recipient] = []       # people skipped: samples when too few would be sent
    for recipient in audience.recipients:
        status = statuses.get(recipient.email, "pending")
        lists = ";".join(recipient.lists)
        if status in eligible:
            if len(sent) < samples:
                sent.append(recipient)
            rows.append((recipient.line, recipient.email, recipient.name, lists, "send", ""))
        else:
            if len(spare) < samples:
                spare.append(recipient)
            rows.append((recipient.line, recipient.email, recipient.name, lists, "skip", REASONS[status]))
    would_send = sum(1 for row in rows if row[4] == "send")
    for exclusion in audience.exclusions:
        rows.append((exclusion.line, exclusion.email, exclusion.name, "", "excluded", exclusion.reason))
    rows.sort(key=itemgetter(0))
    return rows, (sent + spare)[:samples], would_send


def write_dry_run(settings, prepared: PreparedDryRun) -> DryRunReport:
    """Write output/issue-N/dry-run/: manifest.csv and sample-1.eml... (older samples removed)."""
    directory = settings.issue_build_dir(prepared.issue) / "dry-run"
    make_folder(directory)
    for old in directory.glob("sample-*.eml"):
        old.unlink()
    written = [directory / f"sample-{index}.eml" for index in range(1, len(prepared.samples) + 1)]
    manifest = directory / "manifest.csv"
    for path, data in [*zip(written, prepared.samples), (manifest, prepared.manifest)]:
        try:
            path.write_bytes(data)
        except OSError as problem:
            raise OutputError(f"{path}: cannot write the dry run's file ({problem.strerror})") from None
    return DryRunReport(directory=directory, manifest=manifest, samples=tuple(written),
                        would_send=prepared.would_send, skipped=prepared.skipped, excluded=prepared.excluded,
                        largest_html=prepared.largest_html)


def largest_html(settings, issue: RenderedIssue, recipients: Sequence[Recipient]) -> int:
    """The UTF-8 size of the largest personalised HTML, as len(personalize(...).html.encode()) would say.

    What differs between two people's HTML is their escaped values. The link fields
    (token, unsubscribe and view URLs) differ only by the token, which has the same
    length and needs no escaping for everyone (recipient_token: 24 URL-safe base64
    characters), so people are ranked by their other values alone and the first of the
    largest is filled exactly, through the same envelope a send builds.
    """
    if not recipients:
        return 0
    # (field, fallback, escaped length of each distinct value: columns repeat a lot, names and addresses do not)
    varying: list[tuple[str, str, dict[str, int]]] = [
        (placeholder.name, placeholder.fallback, {}) for placeholder in issue.html.placeholders
        if placeholder.name not in LINK_FIELDS]
    columns = any(name not in ("email", "name") for name, _, _ in varying)
    best, largest = recipients[0], -1
    for recipient in recipients:
        fields = recipient.fields if columns else {}   # a file's row makes its mapping when asked: once
        size = 0
        for name, fallback, sizes in varying:
            if name == "email":
                size += len(escape_html(recipient.email or fallback))
            elif name == "name":
                size += len(escape_html(recipient.name or fallback))
            else:
                value = fields[name]   # there for everyone: check_merge_fields
                known = sizes.get(value)
                if known is None:
                    known = sizes[value] = len(escape_html(_as_merged(value) or fallback))
                size += known
        if size > largest:
            best, largest = recipient, size
    return issue.html.filled_size(envelope_for(best, settings, issue.number).fields, escape_html)


def _as_merged(value: str) -> str:
    """A column's value as personalize.merge_values gives it (control characters as spaces)."""
    return value if value.isprintable() else CONTROL_CHARACTERS.sub(" ", value)


def _sample(issue: RenderedIssue, envelope, settings) -> bytes:
    try:
        message = build_message(issue, envelope, sender=settings.sender, links=settings.links)
    except UnusableAddress as error:
        raise CampaignError(f"{envelope.email}: {error}") from None
    return message.as_bytes()
