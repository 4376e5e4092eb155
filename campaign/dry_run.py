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
from pathlib import Path

from .audience import Audience
from .errors import CampaignError, ContentError
from .files import make_folder
from .mime import UnusableAddress, build_message
from .merge import escape_html
from .personalize import envelope_for, personalize
from .render import RenderedIssue
from .send.plan import SendOptions, check_merge_fields
from .spreadsheet import write_csv

MANIFEST_COLUMNS = ("line", "email", "name", "lists", "action", "reason")
SAMPLES = 3

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


def dry_run(settings, issue: RenderedIssue, audience: Audience, statuses: dict[str, str],
            options: SendOptions = SendOptions(), *, samples: int = SAMPLES) -> DryRunReport:
    """Personalise every message of a send, send none; write the manifest and a few .eml samples.

    `statuses` is the ledger's {email: status} for the send's kind (ledger.statuses_read_only).
    """
    check_merge_fields(issue, audience.recipients)
    directory = settings.issue_build_dir(issue.number) / "dry-run"
    make_folder(directory)
    for old in directory.glob("sample-*.eml"):
        old.unlink()
    eligible = set(options.eligible())
    rows: list[tuple[int, list[str]]] = []
    written: list[Path] = []
    spare: list = []                  # envelopes of people skipped: samples when too few would be sent
    would_send = skipped = largest = 0
    for recipient in audience.recipients:
        envelope = envelope_for(recipient, settings, issue.number)
        try:
            personalize(issue, envelope)  # every message built as a real send would: a broken field fails here
        except ContentError as error:
            raise ContentError(f"{recipient.email} (recipients line {recipient.line}): {error}") from None
        largest = max(largest, issue.html.filled_size(envelope.fields, escape_html))  # == len(html.encode())
        status = statuses.get(recipient.email, "pending")
        lists = ";".join(recipient.lists)
        if status in eligible:
            would_send += 1
            rows.append((recipient.line, [recipient.email, recipient.name, lists, "send", ""]))
            if len(written) < samples:
                written.append(_write_sample(directory / f"sample-{len(written) + 1}.eml", issue, envelope,
                                             settings))
        else:
            skipped += 1
            if len(spare) < samples:
                spare.append(envelope)
            rows.append((recipient.line, [recipient.email, recipient.name, lists, "skip", REASONS[status]]))
    for envelope in spare[:samples - len(written)]:  # the samples are always written
        written.append(_write_sample(directory / f"sample-{len(written) + 1}.eml", issue, envelope, settings))
    for exclusion in audience.exclusions:
        rows.append((exclusion.line, [exclusion.email, exclusion.name, "", "excluded", exclusion.reason]))
    rows.sort(key=lambda row: row[0])
    manifest = directory / "manifest.csv"
    write_csv(manifest, MANIFEST_COLUMNS, ([str(line), *cells] for line, cells in rows), what="manifest")
    return DryRunReport(directory=directory, manifest=manifest, samples=tuple(written), would_send=would_send,
                        skipped=skipped, excluded=len(audience.exclusions), largest_html=largest)


def _write_sample(path: Path, issue: RenderedIssue, envelope, settings) -> Path:
    try:
        message = build_message(issue, envelope, sender=settings.sender, links=settings.links)
    except UnusableAddress as error:
        raise CampaignError(f"{envelope.email}: {error}") from None
    path.write_bytes(message.as_bytes())
    return path
