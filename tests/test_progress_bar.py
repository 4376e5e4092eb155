"""The send's progress bar tells what happened, not only how far it got (issue 11 item 20)."""

from __future__ import annotations

from campaign.cli.output import err
from campaign.cli.progress import progress_bar
from campaign.send import Progress


def _final_line(*updates: Progress) -> str:
    with err.capture() as captured:
        with progress_bar(updates[0].total) as update:
            for progress in updates:
                update(progress)
    return captured.get()


def test_a_send_where_every_message_failed_does_not_look_like_success():
    line = _final_line(Progress(total=41, done=41, accepted=0, not_accepted=41))
    assert "0 accepted" in line and "41 not accepted" in line, line
    assert "-/s" not in line, line


def test_a_send_where_everyone_was_accepted_says_so():
    line = _final_line(Progress(total=41, done=20, accepted=20, not_accepted=0),
                       Progress(total=41, done=41, accepted=41, not_accepted=0))
    assert "41/41" in line and "41 accepted" in line and "not accepted" not in line, line
