"""SpamAssassin (local tests only) on a complete personalised issue-30 message."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from campaign import spam
from campaign.checks.spam import WARN_AT, findings_for
from campaign.config import load_settings
from campaign.mime import build_message
from campaign.personalize import Envelope, merge_values
from campaign.render import render_issue

ROOT = Path(__file__).resolve().parents[1]
needs_spamassassin = pytest.mark.skipif(
    shutil.which("spamassassin") is None,
    reason="SpamAssassin is not installed (apt-get install spamassassin; .ci/run installs it)")


@pytest.fixture(scope="module")
def settings():
    return replace(load_settings(ROOT / "campaign.toml"), token_secret="test-secret")


def ana(settings) -> Envelope:
    columns = {"name": "Ana Souza", "organisation": "Prefeitura de São Paulo", "city": "São Paulo",
               "country": "Brazil"}
    values = merge_values("ana.souza@example.org", "Ana Souza", columns, issue_number=30,
                          links=settings.links, token_secret=settings.token_secret)
    return Envelope(email="ana.souza@example.org", name="Ana Souza", fields=values)


@needs_spamassassin
def test_personalised_issue_30_scores_below_one(settings):
    message = build_message(render_issue(settings, 30), ana(settings), sender=settings.sender,
                            links=settings.links)
    report = spam.score_message(message.as_bytes())
    assert report.score < 1.0, report.summary()
    assert report.required == 5.0
    assert {rule.name for rule in report.rules} >= {"HTML_MESSAGE"}
    assert findings_for(report) == []


@needs_spamassassin
def test_issue_30_with_its_generated_pictures_scores_zero(settings):
    """Issue 16: the preheader without a colour of its own no longer trips HTML_FONT_LOW_CONTRAST (+0.7)."""
    rendered = render_issue(settings, 30)
    assert rendered.html.source.count("<img ") == 9
    report = spam.score_message(build_message(rendered, ana(settings), sender=settings.sender,
                                              links=settings.links).as_bytes())
    assert report.score == 0.0, report.summary()
    assert not [rule.name for rule in report.rules if rule.points > 0]


@needs_spamassassin
def test_a_spammy_message_scores_high_and_becomes_a_finding():
    message = (b"From: winner@example.com\r\nTo: you@example.org\r\nSubject: FREE MONEY!!! ACT NOW!!!\r\n\r\n"
               b"Dear friend, you have WON $1,000,000 USD. Click here to claim your FREE prize. 100% guaranteed, "
               b"no risk, act now, limited time offer, cash bonus, viagra, casino, lottery winner!!!\r\n")
    report = spam.score_message(message)
    assert report.score >= WARN_AT, report.summary()
    findings = findings_for(report)
    assert [finding.code for finding in findings] == ["spam-score"]
    assert any(rule.name in findings[0].message for rule in report.rules if rule.points > 0)


def test_report_parsing_reads_score_and_wrapped_rule_descriptions():
    output = """Content analysis details:   (0.7 points, 5.0 required)

 pts rule name              description
---- ---------------------- --------------------------------------------------
-0.0 NO_RELAYS              Informational: message was not relayed via SMTP
 0.7 HTML_FONT_LOW_CONTRAST BODY: HTML font color similar or identical to
                            background

"""
    report = spam.parse_report(output)
    assert report.score == 0.7 and report.required == 5.0
    assert [(rule.name, rule.points) for rule in report.rules] == [("NO_RELAYS", -0.0), ("HTML_FONT_LOW_CONTRAST", 0.7)]
    assert report.rules[1].description == "BODY: HTML font color similar or identical to background"


@needs_spamassassin
def test_a_scoring_left_unread_is_stopped_and_leaves_no_files():
    """The checks start SpamAssassin first and read it last: when a check fails in between, closing the
    run stops the process and removes its message and preferences."""
    run = spam.SpamRun(b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n")
    home = Path(run._home.name)
    assert (home / "message.eml").exists()
    run.close()
    assert run._process.returncode is not None and not home.exists()


# --- verdicts kept: an identical message, the same SpamAssassin, no second run ----------------------

def sample_message(settings, subject_suffix: str = "") -> bytes:
    """Issue 30 as the checks score it; each build has its own Date, Message-ID and MIME boundary."""
    rendered = render_issue(settings, 30)
    if subject_suffix:
        rendered = replace(rendered, subject=type(rendered.subject)(rendered.subject.source + subject_suffix))
    return build_message(rendered, ana(settings), sender=settings.sender, links=settings.links).as_bytes()


@needs_spamassassin
def test_an_identical_message_is_answered_from_the_verdicts_kept_without_running_spamassassin(settings, tmp_path):
    first_message, second_message = sample_message(settings), sample_message(settings)
    assert first_message != second_message   # Message-ID and boundary differ between two builds
    with spam.SpamRun(first_message, remember_in=tmp_path) as first:
        scored = first.report()
    assert not first.remembered and not scored.remembered and len(list(tmp_path.iterdir())) == 1
    assert all(kept.stat().st_size < 10_000 for kept in tmp_path.iterdir())   # the report, not the message
    with spam.SpamRun(second_message, remember_in=tmp_path) as second:
        assert second.remembered and second.process_started is False
        again = second.report()
    assert (again.score, again.rules, again.remembered) == (scored.score, scored.rules, True)
    assert "remembered" in again.summary()


@needs_spamassassin
def test_a_changed_message_or_an_unreadable_verdict_is_scored_again(settings, tmp_path):
    with spam.SpamRun(sample_message(settings), remember_in=tmp_path) as first:
        first.report()
    with spam.SpamRun(sample_message(settings, " (corrected)"), remember_in=tmp_path) as changed:
        assert not changed.remembered and changed.report().remembered is False
    for kept in tmp_path.iterdir():
        kept.write_text("half a file", encoding="utf-8")
    with spam.SpamRun(sample_message(settings), remember_in=tmp_path) as unreadable:
        assert not unreadable.remembered and unreadable.report().score == first.report().score


def fake_spamassassin(root: Path) -> Path:
    """A script laid out as Debian's `spamassassin` is, naming its rule and library folders."""
    for folder in ("share", "etc", "var", "lib/Mail/SpamAssassin"):
        (root / folder).mkdir(parents=True)
    (root / "share" / "50_scores.cf").write_text("score RULE 1.0\n", encoding="utf-8")
    (root / "lib" / "Mail" / "SpamAssassin.pm").write_text("our $VERSION = '4.000001';\n", encoding="utf-8")
    program = root / "spamassassin"
    program.write_text(f"#!/usr/bin/perl -T -w\nmy $DEF_RULES_DIR   = '{root}/share';\n"
                       f"my $LOCAL_RULES_DIR = '{root}/etc';\nmy $LOCAL_STATE_DIR = '{root}/var';\n"
                       f"use lib '{root}/lib';\n", encoding="utf-8")
    return program


def test_the_installation_fingerprint_changes_with_any_rule_file_and_is_none_for_an_unknown_layout(tmp_path):
    program = fake_spamassassin(tmp_path)
    before = spam.installation_fingerprint(str(program))
    assert before is not None and spam.installation_fingerprint(str(program)) == before
    (tmp_path / "var" / "updates.cf").write_text("score RULE 2.0\n", encoding="utf-8")   # as sa-update leaves
    after_update = spam.installation_fingerprint(str(program))
    assert after_update not in (None, before)
    (tmp_path / "lib" / "Mail" / "SpamAssassin" / "Plugin.pm").write_text("1;\n", encoding="utf-8")
    assert spam.installation_fingerprint(str(program)) not in (None, before, after_update)
    program.write_text("#!/bin/sh\nexec /opt/elsewhere/spamassassin \"$@\"\n", encoding="utf-8")
    assert spam.installation_fingerprint(str(program)) is None   # a wrapper we cannot read: nothing kept


def test_at_most_a_few_dozen_verdicts_are_kept(tmp_path):
    for number in range(spam.VERDICTS_KEPT + 10):
        (tmp_path / f"{number:064x}.txt").write_text("x", encoding="utf-8")
    spam.forget_old_verdicts(tmp_path)
    assert len(list(tmp_path.iterdir())) == spam.VERDICTS_KEPT
