"""A whole `campaign send`, as one library call per way of sending: real (or rehearsal), dry run, test.

Each renders the issue once and runs the preflight checks in the background
(SpamAssassin takes a second or two on the other core) while the audience loads;
the real send then plans, asks the caller to confirm, and runs the send loop with
a provider it opens and always closes. What is shown and asked goes through
`SendHooks`, so the CLI prints and a test can answer.
"""

from __future__ import annotations

import gc
import sqlite3
from concurrent.futures import BrokenExecutor, Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from .. import ledger
from ..audience import Audience, find_recipient, load_recipients, normalise_email, resolve_lists, select_audience
from ..config import Settings
from ..content import load_issue, require_issue
from ..errors import CampaignError, UsageError
from ..providers import make_provider, outbox_mailbox, provider_info
from ..suppressions import suppressed_emails_at
from .plan import SendOptions, SendPlan, kind_of, plan_send
from .resume_cache import (AudienceSummary, NothingToSend, cached_nothing_to_send, remember_nothing_to_send,
                           resume_key)
from .stop import StopSignal

if TYPE_CHECKING:   # the render, the checks and the send loop are imported when used: a resume with
    # nothing to send (answered from output/.cache, issue 18) needs none of them
    from ..checks.gate import GateDecision
    from ..dry_run import DryRunReport
    from ..render import RenderedIssue
    from .builder import SecondProcess
    from .loop import Progress, SendReport
    from .testsend import TestSendReport

ProgressBar = Callable[[int], AbstractContextManager[Callable[["Progress"], None]]]


def _no_bar(total: int) -> AbstractContextManager[Callable[["Progress"], None]]:
    return nullcontext(lambda progress: None)


@dataclass(frozen=True)
class SendRequest:
    """What to send, how and to whom, as the user asked for it."""

    issue: int
    provider: str                               # sendgrid | smtp | outbox
    lists: tuple[str, ...] = ()                 # default: every list
    options: SendOptions = SendOptions()

    def __post_init__(self) -> None:
        provider_info(self.provider)   # an unknown name is a UsageError listing the known ones
        if self.options.sandbox and self.provider != "sendgrid":
            raise UsageError("--sandbox is SendGrid's sandbox mode: use it with --provider sendgrid")

    @property
    def kind(self) -> str:
        return kind_of(provider_info(self.provider), self.options)


@dataclass(frozen=True)
class SendHooks:
    """What the caller shows and asks on the way (the CLI prints; tests may record or answer)."""

    on_findings: Callable[[GateDecision], None] = lambda decision: None
    on_plan: Callable[[SendPlan, str, AudienceSummary], None] = lambda plan, subject, audience: None
    confirm: Callable[[SendPlan], bool] = lambda plan: True
    progress: ProgressBar = _no_bar
    stop: StopSignal | None = None             # default: a new one per send (Ctrl-C sets it)
    confirmed_ahead: bool = False              # `confirm` never asks (--yes): the audience may then be
                                               # frozen into the ledger while the checks finish, uncommitted


@dataclass(frozen=True)
class SendResult:
    plan: SendPlan
    report: SendReport | None         # None: nothing to send, or the send was not confirmed
    outbox: Path | None = None        # an outbox rehearsal's mailbox


class Preflight:
    """The issue rendered once, and its checks running in the background while the audience loads.

    Given a `builder` process that renders and checks the issue itself (`SecondProcess.rendering`), this
    process only waits for what it says; should that process die first, both are done here instead.
    """

    def __init__(self, settings: Settings, issue: int, background: ThreadPoolExecutor, hooks: SendHooks, *,
                 force: bool, rehearsal: bool, builder: SecondProcess | None = None):
        self.hooks = hooks
        self._here_instead = partial(Preflight, settings, issue, background, hooks, force=force, rehearsal=rehearsal)
        self._here: Preflight | None = None
        self._builder = builder if builder is not None and builder.rendering is not None else None
        self._decision: Future[GateDecision] | None = None   # asked of the builder when wanted
        if builder is not None and builder.rendering is not None:
            self._rendered = builder.rendering
            return
        from ..checks.gate import gate_decision  # noqa: PLC0415  (lazy: see the imports above)
        from ..checks.spam import start_scoring  # noqa: PLC0415
        from ..render import render_issue  # noqa: PLC0415

        rendered = render_issue(settings, issue)
        self._rendered = Future()
        self._rendered.set_result(rendered)
        # SpamAssassin, the longest check, starts here: from the background thread its start waited
        # on the interpreter, busy loading the audience (tens of GIL hand-overs, up to 0.4 s)
        spam_run = start_scoring(settings, rendered)
        self._decision = background.submit(gate_decision, settings, issue, force=force, rehearsal=rehearsal,
                                           rendered=rendered, spam_run=spam_run)

    @property
    def rendered(self) -> RenderedIssue:
        """The rendered issue; a render error is raised here (ContentError, LayoutError)."""
        try:
            return self._rendered.result()
        except BrokenExecutor:   # the builder died (the out-of-memory killer, say): BrokenProcessPool
            return self._done_here().rendered

    def decided(self) -> bool:
        """Whether the checks have decided; with a builder, not until asked (`decision`)."""
        return self._decision is not None and self._decision.done()

    def decision(self) -> GateDecision:
        """Wait for the checks and show them; raises ChecksFailed when the send is refused."""
        self.rendered   # noqa: B018  (a render error first: no checks were made without the render)
        try:
            if self._decision is None and self._builder is not None:
                self._decision = self._builder.decision()
            assert self._decision is not None
            decision = self._decision.result()
        except BrokenExecutor:
            return self._done_here().decision()
        self.hooks.on_findings(decision)
        decision.enforce()
        return decision

    def _done_here(self) -> Preflight:
        if self._here is None:
            self._here = self._here_instead()
        return self._here


YOUNG_COLLECTION_EVERY = 200_000   # allocations (CPython's default: 700), as mypy sets for its builds


@contextmanager
def fewer_collections() -> Iterator[None]:
    """The garbage collector runs less often during a send, and as before after it.

    A send makes a few objects per recipient (an envelope, an answer) that live for a batch or
    two. Collected every 700 allocations, each was traversed several times and promoted into
    collections of the whole audience: ~10 s of a million-recipient send (bench/RESULTS.md).
    Memory is not held longer: objects without cycles are freed when their last reference goes.
    """
    before = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, 30, 30)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def load_audience(settings: Settings, lists: Sequence[str]) -> Audience:
    return select_audience(load_recipients(settings.recipients, settings), resolve_lists(settings, list(lists)),
                           suppressed_emails_at(settings.database))


def run_send(settings: Settings, request: SendRequest, hooks: SendHooks = SendHooks()) -> SendResult:
    """Check, plan, confirm and send (or resume) one issue; a rehearsal for the outbox and --sandbox."""
    kind, number = request.kind, request.issue
    rehearsal = kind != ledger.REAL
    require_issue(settings.content_dir, number)   # before the ledger is made: a typo creates no campaign.db
    connection = ledger.open_ledger(settings.database)
    try:
        with fewer_collections(), ThreadPoolExecutor(max_workers=1) as background, ExitStack() as builders:
            # A first send surely sends: check while the audience loads. A resume may find nothing to do.
            resuming = ledger.has_deliveries(connection, number, kind)
            builder = None if resuming else _builder_ahead(settings, request, builders)

            def preflight() -> Preflight:
                return Preflight(settings, number, background, hooks, force=request.options.force,
                                 rehearsal=rehearsal, builder=builder)

            early = None if resuming else preflight()
            key = _resume_key(settings, connection, request) if resuming else None
            cached = cached_nothing_to_send(settings, number, kind, key)
            if cached is not None:   # the same file, suppressions and ledger as a resume that found nobody
                hooks.on_plan(cached.plan, load_issue(settings.content_dir, number).subject, cached.audience)
                return SendResult(cached.plan, None)
            if resuming and _rows_left(connection, number, kind, request.options):   # likely sends too
                early = preflight()
            audience = load_audience(settings, request.lists)
            plan = plan_send(ledger.status_by_email(connection, number, kind), number, audience.recipients,
                             provider_info(request.provider), request.options,
                             settings.smtp.connections if request.provider == "smtp" else 1)
            if plan.to_send == 0:
                found = NothingToSend(plan, AudienceSummary(audience.lists, len(audience.exclusions)))
                if key is not None and key == _resume_key(settings, connection, request):   # unchanged meanwhile
                    remember_nothing_to_send(settings, key, found)
                hooks.on_plan(plan, load_issue(settings.content_dir, number).subject, found.audience)
                return SendResult(plan, None)
            checked = early or preflight()

            def decide() -> GateDecision | None:
                """Show the checks (a refusal raises) and the plan, and ask; None: not confirmed."""
                decision = checked.decision()
                hooks.on_plan(plan, checked.rendered.subject.source,
                              AudienceSummary(audience.lists, len(audience.exclusions)))
                return decision if hooks.confirm(plan) else None

            if hooks.confirmed_ahead and not checked.decided():   # the checks decide while the audience
                # is frozen, uncommitted (SpamAssassin takes a second or two); already decided (an audience
                # slower to load than the checks): shown at once, and a refusal costs no freezing. A builder's
                # checks are asked for only now, from the freeze: its digests come first (Preflight.decided)
                return _deliver(settings, request, connection, checked.rendered, audience, plan, decide, hooks,
                                builder)
            decision = decide()
            if decision is None:
                return SendResult(plan, None)
            return _deliver(settings, request, connection, checked.rendered, audience, plan,
                            lambda: decision, hooks, builder)
    finally:
        connection.close()


def _builder_ahead(settings: Settings, request: SendRequest, stack: ExitStack) -> SecondProcess | None:
    """A first send's builder process (send/builder.py), started now when the send looks large enough for
    one: it renders and checks the issue while this process loads the audience (`Preflight`)."""
    from .builder import IssueToCheck, second_process_ahead  # noqa: PLC0415  (lazy: see the imports above)

    to_check = IssueToCheck(request.issue, request.options.force, rehearsal=request.kind != ledger.REAL)
    builder = second_process_ahead(settings, request.provider, to_check, sandbox=request.kind == "sandbox")
    if builder is not None:
        stack.callback(builder.close)
    return builder


class _NotConfirmed(Exception):
    """The caller confirmed ahead, then said no after all: the send's ledger writes are undone."""


def _deliver(settings: Settings, request: SendRequest, connection: sqlite3.Connection, rendered: RenderedIssue,
             audience: Audience, plan: SendPlan, decide: Callable[[], GateDecision | None],
             hooks: SendHooks, builder: SecondProcess | None) -> SendResult:
    """Open the provider, run the send loop with a progress bar, always close the provider.

    `decide()` is called by the send loop, once the run is started and the audience frozen, before
    anything is committed; the progress bar appears with the first count, after what it showed.
    `builder`: the process started ahead to build the batches, if one was."""
    from .loop import send_issue  # noqa: PLC0415  (lazy: see the imports above)

    def before_sending() -> str:
        decision = decide()
        if decision is None:
            raise _NotConfirmed
        return decision.forced_over

    outbox = outbox_mailbox(settings, request.issue)
    if request.options.restart and plan.kind == "outbox":
        outbox.unlink(missing_ok=True)  # the new rehearsal's mailbox holds only its own messages
    provider = make_provider(request.provider, settings, issue=request.issue)
    try:
        with ExitStack() as shown:
            bar: list[Callable[[Progress], None]] = []

            def on_progress(progress: Progress) -> None:
                if not bar:
                    bar.append(shown.enter_context(hooks.progress(plan.to_send)))
                bar[0](progress)

            report = send_issue(connection, rendered, audience.recipients, provider, settings, request.options,
                                stop=hooks.stop, on_progress=on_progress, before_sending=before_sending,
                                builder=builder)
    except _NotConfirmed:
        return SendResult(plan, None)
    finally:
        provider.close()
    return SendResult(plan, report, outbox if plan.kind == "outbox" else None)


def _rows_left(connection: sqlite3.Connection, issue: int, kind: str, options: SendOptions) -> bool:
    """Whether the ledger has rows this resume would send, if their people are still in the audience
    (a crash leaves the rest of the send `pending`). Not `skipped`: those were suppressed during a
    send and seldom come back, and checks started for nothing would keep a resume waiting for them."""
    wanted = [status for status in options.eligible() if status != ledger.SKIPPED]
    return ledger.has_status(connection, issue, kind, wanted + ([ledger.IN_FLIGHT] if options.resend_unknown else []))


def _resume_key(settings: Settings, connection: sqlite3.Connection, request: SendRequest) -> str | None:
    lists = resolve_lists(settings, list(request.lists))
    return resume_key(settings, connection, request.issue, request.kind, request.provider, lists, request.options)


def run_dry_run(settings: Settings, request: SendRequest, hooks: SendHooks = SendHooks()) -> DryRunReport:
    """Everything a send does but sending and recording: check every recipient, write the manifest and samples."""
    from ..dry_run import prepare_dry_run, write_dry_run  # noqa: PLC0415  (lazy: see the imports above)

    with fewer_collections(), ThreadPoolExecutor(max_workers=1) as background:
        checked = Preflight(settings, request.issue, background, hooks, force=request.options.force,
                            rehearsal=True)
        audience = load_audience(settings, request.lists)   # the checks run meanwhile
        # It answers for a real send: rehearsals (outbox, --sandbox) keep rows of their own that a real send ignores.
        statuses = ledger.statuses_read_only(settings.database, request.issue, ledger.REAL)
        try:   # still meanwhile (SpamAssassin takes a second or two); written once the checks are shown
            prepared = prepare_dry_run(settings, checked.rendered, audience, statuses, request.options)
        except CampaignError:
            checked.decision()   # the findings first, as ever: they may say why a merge field fails
            raise
        checked.decision()
    return write_dry_run(settings, prepared)


def run_test_send(settings: Settings, request: SendRequest, addresses: Sequence[str], as_email: str | None = None,
                  hooks: SendHooks = SendHooks()) -> TestSendReport:
    """A [TEST] copy to `addresses` only, personalised as `as_email` (a recipient) or with sample values."""
    wanted = []
    for address in addresses:
        try:
            wanted.append(normalise_email(address))
        except ValueError as error:
            raise UsageError(f"--test-to {address!r} is not a valid address: {error}") from None
    with ThreadPoolExecutor(max_workers=1) as background:
        checked = Preflight(settings, request.issue, background, hooks, force=request.options.force,
                            rehearsal=True)
        checked.decision()
    as_recipient = find_recipient(settings, as_email) if as_email else None
    provider = make_provider(request.provider, settings,
                             outbox_path=outbox_mailbox(settings, request.issue, test=True))
    from .testsend import send_test  # noqa: PLC0415  (lazy: see the imports above)

    stop = hooks.stop or StopSignal()
    try:
        with stop.on_interrupt():
            return send_test(checked.rendered, wanted, provider, settings, as_recipient=as_recipient,
                             suppressed=suppressed_emails_at(settings.database), sandbox=request.options.sandbox,
                             stop=stop)
    finally:
        provider.close()
