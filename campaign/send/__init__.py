"""Sending an issue: one module per job.

    plan.py      SendOptions, SendPlan, kind_of (the ledger kind), batch_size_for, plan_send, check_merge_fields
    stop.py      StopSignal: Ctrl-C asks the send to stop after the batch in flight
    retry.py     RetryPolicy and deliver_with_retries: the one retry loop of real sends and test sends
    record.py    the ledger's side of a run (start, write ahead, record, finish) and the send lock
    loop.py      send_issue: the batch loop, record before you send
    testsend.py  send_test: [TEST] copies to a few addresses, no ledger record
    workflow.py  run_send, run_dry_run, run_test_send: a whole `campaign send`, as the CLI calls it
    status.py    issue_status: what the ledger says about an issue's send (`campaign status`)

The preflight gate's decision is made in campaign/checks/gate.py; send_issue takes it.

workflow.py is imported by its full name (`campaign.send.workflow`), not from here:
it uses campaign.dry_run, which uses plan.py.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .loop import Progress, SendReport, send_issue
    from .plan import SendOptions, SendPlan, batch_size_for, check_merge_fields, kind_of, plan_send
    from .record import RunRecord, send_lock
    from .retry import Answer, Retries, RetryPolicy, deliver_with_retries
    from .stop import StopSignal
    from .testsend import TEST_PREFIX, TestSendReport, sample_recipient, send_test, with_test_subject

# Each name is imported from its module when first used: a resume with nothing to send (issue 18)
# needs plan.py, not the send loop, the checks and the providers behind it.
_HOMES = {
    "Progress": "loop", "SendReport": "loop", "send_issue": "loop",
    "SendOptions": "plan", "SendPlan": "plan", "batch_size_for": "plan", "check_merge_fields": "plan",
    "kind_of": "plan", "plan_send": "plan", "RunRecord": "record", "send_lock": "record",
    "Answer": "retry", "Retries": "retry", "RetryPolicy": "retry", "deliver_with_retries": "retry",
    "StopSignal": "stop", "TEST_PREFIX": "testsend", "TestSendReport": "testsend", "sample_recipient": "testsend",
    "send_test": "testsend", "with_test_subject": "testsend",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)


__all__ = [
    "Answer", "Progress", "Retries", "RetryPolicy", "RunRecord", "SendOptions",
    "SendPlan", "SendReport", "StopSignal", "TEST_PREFIX", "TestSendReport", "batch_size_for",
    "check_merge_fields", "deliver_with_retries", "kind_of", "plan_send", "sample_recipient", "send_issue",
    "send_lock", "send_test", "with_test_subject",
]
