"""The live preview's state: one render and one check per change of an issue's files, filled per request.

`build_snapshot` renders the issue once (with the public picture addresses, as
it will be sent, so the checks see the real email), runs the checks on that
render without the spam score, and keeps a preview copy of the HTML whose
pictures point at the local files and whose section headings carry anchors.
Each page request then only fills that copy for one recipient: render once,
fill many. A render error becomes part of the snapshot, never an exception:
the preview shows it and recovers when the file is fixed.

`LiveIssue` holds the current snapshot and makes a new one whenever watchfiles
reports a change under content/issue-N/, layouts/ or to campaign.toml.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import watchfiles

from .checks import Finding, check_issue
from .checks.findings import place
from .config import Settings
from .content import Issue, issue_folder
from .errors import CampaignError, UsageError
from .merge import MergeTemplate
from .render import RenderedIssue, render_issue

log = logging.getLogger(__name__)
PREVIEW_PICTURES = "images/"             # relative to the page that shows the email
HEADING = re.compile(r"<h2\b([^>]*)>(.*?)</h2>", re.DOTALL | re.IGNORECASE)
TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class Snapshot:
    """The issue as it stands after one change: rendered and checked, or the error that stopped it."""

    version: int
    number: int
    made: dt.datetime
    seconds: float                                   # render and checks together
    settings: Settings | None = None
    rendered: RenderedIssue | None = None
    email: MergeTemplate | None = None               # the preview copy: local pictures, section anchors
    findings: tuple[Finding, ...] = ()
    anchors: tuple[tuple[str, str], ...] = ()        # (content path, anchor id) of each section shown
    error: str = ""                                  # why it could not render, with file and line
    notes: tuple[str, ...] = ()

    def anchor_for(self, finding: Finding) -> str:
        """The anchor of the section a finding is about, or "" when it is about no one section."""
        for prefix, anchor in self.anchors:
            if re.match(re.escape(prefix) + r"(?=[/: ]|$)", finding.where):
                return anchor
        return ""


def build_snapshot(load_settings: Callable[[], Settings], number: int, version: int) -> Snapshot:
    """Render and check issue `number` once; whatever goes wrong is kept in the snapshot, never raised."""
    started, made = time.perf_counter(), dt.datetime.now().astimezone()
    settings = None
    try:
        settings = load_settings()
        rendered = render_issue(settings, number)
    except Exception as error:  # noqa: BLE001  (bad content must never stop the preview)
        message = str(error) if isinstance(error, CampaignError) else f"{type(error).__name__}: {error}"
        if not isinstance(error, CampaignError):
            log.exception("unexpected error while rendering issue %s", number)
        return Snapshot(version=version, number=number, made=made, seconds=time.perf_counter() - started,
                        settings=settings, error=shorter_paths(message, settings))
    findings, notes = checked(settings, rendered)
    issue = rendered.issue
    assert issue is not None  # render_issue always keeps the issue it rendered
    source, anchors = with_anchors(local_pictures(rendered.html.source, settings, number), issue)
    return Snapshot(version=version, number=number, made=made, seconds=time.perf_counter() - started,
                    settings=settings, rendered=rendered, email=MergeTemplate(source, markup=True), findings=findings,
                    anchors=anchors, notes=notes)


def checked(settings: Settings, rendered: RenderedIssue) -> tuple[tuple[Finding, ...], tuple[str, ...]]:
    """The findings of `campaign check` on this render, without the spam score (seconds, not a live task)."""
    notes = ("Spam score not run here: `campaign check` runs SpamAssassin.",)
    try:
        report = check_issue(settings, rendered.number, rendered=rendered, deliverability=False)
    except Exception as error:  # noqa: BLE001  (a check that fails must not hide the email)
        if not isinstance(error, CampaignError):
            log.exception("unexpected error while checking issue %s", rendered.number)
        return (), (shorter_paths(f"The checks could not run: {error}", settings), *notes)
    return report.findings, notes + report.notes


def local_pictures(source: str, settings: Settings, number: int) -> str:
    """Point the pictures at the issue's images/ folder, which the preview serves, not the public URL."""
    public = settings.links.images_url.format(issue=number)
    return source.replace(html.escape(public), PREVIEW_PICTURES).replace(public, PREVIEW_PICTURES)


def with_anchors(source: str, issue: Issue) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Give each section's heading an id (`section-recent-events`), found in order by its text."""
    anchors = []
    pieces, position = [], 0
    headings = list(HEADING.finditer(source))
    for section in issue.sections:
        wanted = " ".join(section.heading.split())
        for index, match in enumerate(headings):
            shown = " ".join(html.unescape(TAG.sub("", match.group(2))).split())
            if shown.endswith(wanted) and " id=" not in match.group(1):
                anchor = f"section-{section.slug}"
                pieces += [source[position:match.start()], f'<h2 id="{anchor}"', match.group(1), ">"]
                position = match.start(2)
                anchors.append((place(section.source, issue), anchor))
                headings = headings[index + 1:]
                break
    return "".join(pieces) + source[position:], tuple(anchors)


def shorter_paths(message: str, settings: Settings | None) -> str:
    """The message with the project's folder left out of every path: `content/issue-31/01-cover.md:3`."""
    if settings is None:
        return message
    return message.replace(f"{settings.root}/", "")


class LiveIssue:
    """The current snapshot of one issue, renewed on every change of its files."""

    def __init__(self, load_settings: Callable[[], Settings], number: int, *, config_file: Path | None,
                 on_render: Callable[[Snapshot], None] | None = None):
        self.load_settings, self.number, self.config_file = load_settings, number, config_file
        self.on_render = on_render or (lambda snapshot: None)
        settings = load_settings()
        folder = issue_folder(settings.content_dir, number)
        if not folder.is_dir():
            raise UsageError(f"issue {number} does not exist: no folder {folder}; "
                             f"start it with `campaign new --issue {number}`")
        self.watched = (folder, settings.layouts_dir)
        self.snapshot = build_snapshot(load_settings, number, 1)
        self._changed = asyncio.Event()       # set, and replaced, at each new snapshot (and at stop)
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_render(self.snapshot)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def refresh(self) -> Snapshot:
        """Render and check again (in a thread: the event loop keeps serving meanwhile)."""
        async with self._lock:
            snapshot = await asyncio.to_thread(build_snapshot, self.load_settings, self.number,
                                               self.snapshot.version + 1)
            self.snapshot = snapshot
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()
        self.on_render(snapshot)
        return snapshot

    async def next_after(self, version: int, timeout: float) -> Snapshot | None:
        """The first snapshot newer than `version`, or None after `timeout` seconds or at stop."""
        if self.snapshot.version > version:
            return self.snapshot
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            return None
        return None if self.stopping or self.snapshot.version <= version else self.snapshot

    async def watch(self) -> None:
        """Re-render on every change until stopped: the issue's folder and layouts, and campaign.toml."""
        self._loop = asyncio.get_running_loop()
        watchers = [self._watch_folders()]
        if self.config_file is not None and self.config_file.exists():
            watchers.append(self._watch_config(self.config_file))
        await asyncio.gather(*watchers)

    async def _watch_folders(self) -> None:
        folders = [str(path) for path in self.watched if path.is_dir()]
        async for _ in watchfiles.awatch(*folders, stop_event=self._stop, debounce=800, rust_timeout=500):
            await self.refresh()

    async def _watch_config(self, config: Path) -> None:
        """campaign.toml through its folder (not recursively): editors replace a file rather than write it."""
        def is_config(_change: watchfiles.Change, path: str) -> bool:
            return Path(path).name == config.name

        async for _ in watchfiles.awatch(config.parent, watch_filter=is_config, recursive=False,
                                         stop_event=self._stop, debounce=800, rust_timeout=500):
            await self.refresh()

    def stop(self) -> None:
        """End the watchers and every waiting event stream; safe from a signal handler or another thread."""
        def stop_now() -> None:
            self._stop.set()
            self._changed.set()

        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(stop_now)
        else:
            stop_now()
