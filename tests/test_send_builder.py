"""A large concurrent send builds its batches in a second process (campaign/send/builder.py, issue 18).

Real SendGrid client, the local stand-in (validating every body against SendGrid's schema),
real SQLite files, a real spawned builder process. The threshold is lowered so that a small
send takes that path; what arrives at the stand-in is compared with what a send built in
one process posts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from campaign import ledger
from campaign.errors import ProviderError
from campaign.ledger import open_ledger
from campaign.providers.sendgrid import SendGridProvider
from campaign.providers.sendgrid_payload import build_body
from campaign.send import RetryPolicy, SendOptions, send_issue
from campaign.send import builder as builders
from send_support import make_settings, people, small_issue
from servers.sendgrid_server import SendGridServer

DRIVER = Path(__file__).with_name("send_support.py")
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)
UNBUILDABLE = "person00017@example.org"
NEEDS_PROC = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the builder process (Linux)")


def build_body_refusing_one(batch, settings):
    """A provider body builder that fails on one address: imported by name in the builder process."""
    if any(envelope.email == UNBUILDABLE for envelope in batch.envelopes):
        raise ProviderError(f"cannot build the body for {UNBUILDABLE}")
    return build_body(batch, settings)


class UnbuildableProvider(SendGridProvider):
    build_body = staticmethod(build_body_refusing_one)


def build_body_then_die_mid_answer(batch, settings):
    """A body builder whose process is killed (SIGKILL: the out-of-memory killer, say) once the first bytes
    of its answer are written and the rest are not: imported by name in the builder process."""
    body = build_body(batch, settings)

    def killed_after_the_first_write(frame, event, arg):
        if event == "return" and frame.f_code.co_name == "_send":   # multiprocessing's Connection._send
            os.kill(os.getpid(), signal.SIGKILL)

    sys.setprofile(killed_after_the_first_write)   # an answer over 16 KB goes as a header, then the rest
    return body


@pytest.fixture
def second_process(monkeypatch):
    """Every concurrent SendGrid send, however small, builds in a second process; counts what it built."""
    monkeypatch.setattr(builders, "SECOND_PROCESS_FROM", 1)
    taken: list[str] = []
    batch = builders.SecondProcess.batch

    def counted(self, index, batch_id):
        built = batch(self, index, batch_id)
        taken.append(built[0].batch_id)
        return built

    monkeypatch.setattr(builders.SecondProcess, "batch", counted)
    return taken


def send(settings, connection, recipients, batch_size, provider=None, **options):
    return send_issue(connection, small_issue(), recipients, provider or SendGridProvider(settings), settings,
                      SendOptions(batch_size=batch_size, **options), policy=FAST, sleep=lambda seconds: None)


def personalizations(server) -> dict[str, dict]:
    """What the stand-in received for each address, minus the delivery id (random per send)."""
    received = {}
    for request in server.mail_sends():
        for personalization in request.body["personalizations"]:
            args = dict(personalization["custom_args"])
            assert len(args.pop("campaign_delivery")) == 20
            received[personalization["to"][0]["email"]] = {**personalization, "custom_args": args}
    return received


def every_unsubscribe_link_finds_its_reader(server, connection) -> int:
    """Each message's unsubscribe token, as the stand-in received it, names its own recipient in the
    ledger (kept with the write-ahead); returns how many were checked."""
    checked = 0
    for request in server.mail_sends():
        for personalization in request.body["personalizations"]:
            link = urlsplit(personalization["substitutions"]["[[unsubscribe_url]]"])
            [token] = parse_qs(link.query)["t"]
            assert ledger.address_for_token(connection, token) == personalization["to"][0]["email"]
            checked += 1
    return checked


def test_a_send_built_in_a_second_process_posts_what_a_send_built_in_one_process_posts(tmp_path, monkeypatch):
    recipients = people(60) + people(5, lists=("members", "embassies"), start=60)
    recipients[3] = type(recipients[3])(email=recipients[3].email, name="Ann & <Bob>", lists=("members",),
                                        fields={"name": "Ann & <Bob>"}, line=5)
    received = []
    for threshold in (10**9, 1):
        monkeypatch.setattr(builders, "SECOND_PROCESS_FROM", threshold)
        folder = tmp_path / str(threshold)
        folder.mkdir()
        with SendGridServer() as server:
            settings = make_settings(folder, {"SENDGRID_API_URL": server.url}, concurrency=4)
            connection = open_ledger(settings.database)
            report = send(settings, connection, recipients, batch_size=10)
            assert report.outcome == "completed" and report.counts["accepted"] == 65
            assert not [r for r in server.mail_sends() if r.errors], "every body valid against SendGrid's schema"
            sent_ids = {p["to"][0]["email"]: p["custom_args"]["campaign_delivery"]
                        for r in server.mail_sends() for p in r.body["personalizations"]}
            rows = {d.email: d.delivery_id for d in ledger.deliveries(connection, 30, "real")}
            assert rows == sent_ids   # each row holds the id its message carried
            assert every_unsubscribe_link_finds_its_reader(server, connection) == 65
            received.append(personalizations(server))
            connection.close()
    in_one_process, in_two = received
    assert in_two == in_one_process and len(in_two) == 65
    assert in_two[recipients[3].email]["substitutions"]["[[name|colleague]]"] == "Ann &amp; &lt;Bob&gt;"


def test_the_second_process_builds_every_batch_of_a_large_send(tmp_path, second_process):
    with SendGridServer(validate=False) as server:
        settings = make_settings(tmp_path, {"SENDGRID_API_URL": server.url}, concurrency=4)
        connection = open_ledger(settings.database)
        report = send(settings, connection, people(100), batch_size=10)
        batch_ids = Counter(d.batch_id for d in ledger.deliveries(connection, 30, "real"))
        connection.close()
    assert report.outcome == "completed" and report.counts["accepted"] == 100
    assert len(second_process) == 10 and Counter(server.delivered()) == Counter(r.email for r in people(100))
    assert batch_ids == {f"30-{report.run_id}-{index}": 10 for index in range(1, 11)}   # each row names its batch


def test_a_batch_the_second_process_cannot_build_stays_pending_and_the_rest_in_flight_are_recorded(
        tmp_path, second_process):
    with SendGridServer(validate=False, delay=0.05) as server:
        settings = make_settings(tmp_path, {"SENDGRID_API_URL": server.url}, concurrency=4)
        connection = open_ledger(settings.database)
        with pytest.raises(ProviderError, match=f"cannot build the body for {UNBUILDABLE}"):
            send(settings, connection, people(60), batch_size=5, provider=UnbuildableProvider(settings))
        statuses = ledger.status_by_email(connection, 30, "real")
        connection.close()
    delivered = set(server.delivered())
    assert statuses[UNBUILDABLE] == "pending" and UNBUILDABLE not in delivered
    assert {email for email, status in statuses.items() if status == "accepted"} == delivered
    assert "in_flight" not in statuses.values() and len(delivered) == 15   # the three batches before it


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@contextmanager
def sending_with_a_builder(folder: Path, count: int, batch: int):
    """A send (the driver in send_support.py) building in a second process, to a stand-in answering in
    50 ms, once three requests arrived: (stand-in, settings, the send's process, its builder's pid)."""
    with SendGridServer(validate=False, delay=0.05) as server:
        settings = make_settings(folder, {"SENDGRID_API_URL": server.url}, concurrency=2)
        process, builder = _start_driver(server, settings, count, batch)
        try:
            yield server, settings, process, builder
        finally:   # a send left hanging by a failed test would run on (it answers SIGTERM between batches)
            process.kill()
            process.wait()


def _start_driver(server, settings, count: int, batch: int) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [sys.executable, str(DRIVER), str(settings.database), str(count), str(batch), "--concurrency", "2",
         "--second-process"],
        env={**os.environ, "SENDGRID_API_URL": server.url, "SENDGRID_API_KEY": server.api_key},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while len(server.mail_sends()) < 3 and process.poll() is None:
        assert time.monotonic() < deadline, "the send made no progress"
        time.sleep(0.005)
    builder, = [pid for pid in children_of(process.pid) if b"spawn_main" in command_line(pid)]
    return process, builder


@NEEDS_PROC
def test_the_builder_process_ignores_ctrl_c_and_ends_when_the_send_is_killed(tmp_path):
    count, batch = 6000, 100
    with sending_with_a_builder(tmp_path, count, batch) as (server, settings, process, builder):
        deadline = time.monotonic() + 30
        os.kill(builder, signal.SIGINT)                # Ctrl-C is the sending process's to answer
        sent = len(server.mail_sends())
        while len(server.mail_sends()) < sent + 3 and process.poll() is None:
            assert time.monotonic() < deadline, "the send stopped when its builder was sent SIGINT"
            time.sleep(0.005)
        assert process.poll() is None and Path(f"/proc/{builder}").exists()
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=20)
        while Path(f"/proc/{builder}").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not Path(f"/proc/{builder}").exists(), "the builder process outlived the killed send"
        server.delay = 0.0
        connection = open_ledger(settings.database)
        report = send(settings, connection, people(count), batch, resend_unknown=True)
        connection.close()
    assert report.counts["accepted"] == count and set(server.delivered()) == {r.email for r in people(count)}
    received = Counter(server.delivered())
    assert all(received[email] == 1 for email in received if email not in report.recovered)


@NEEDS_PROC
def test_a_send_whose_builder_process_dies_builds_the_rest_itself_and_mails_everyone_once(tmp_path):
    count, batch = 3000, 100
    with sending_with_a_builder(tmp_path, count, batch) as (server, settings, process, builder):
        os.kill(builder, signal.SIGKILL)              # the out-of-memory killer, say
        output, errors = process.communicate(timeout=60)
    assert process.returncode == 0 and output.startswith("completed"), errors
    assert "Traceback" not in errors
    assert Counter(server.delivered()) == Counter(r.email for r in people(count))


SEND_SCRIPT = """\
import sys
sys.path[:0] = {paths!r}
from campaign.ledger import open_ledger
from campaign.providers.sendgrid import SendGridProvider
from campaign.send import SendOptions, builder, send_issue
from send_support import make_settings, people, small_issue
builder.SECOND_PROCESS_FROM = 1
print("started", flush=True)
from pathlib import Path
{provider}
settings = make_settings(Path({folder!r}), {{"SENDGRID_API_URL": {url!r}}}, concurrency=2)
report = send_issue(open_ledger(settings.database), small_issue(), people({count}), Provider(settings), settings,
                    SendOptions(batch_size={batch}))
print(report.outcome, report.counts["accepted"], flush=True)
"""


def run_send_script(folder: Path, server, count: int, batch: int,
                    provider: str = "Provider = SendGridProvider") -> subprocess.CompletedProcess:
    """SEND_SCRIPT (a script without a main guard, building in a second process) run in its own
    interpreter; killed (SIGKILL) past 60 s."""
    script = folder / "send_now.py"
    paths = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
    script.write_text(SEND_SCRIPT.format(paths=paths, folder=str(folder), url=server.url, count=count, batch=batch,
                                         provider=provider), encoding="utf-8")
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SENDGRID_API_KEY": server.api_key})


def test_a_send_from_a_script_without_a_main_guard_runs_that_script_once(tmp_path):
    with SendGridServer(validate=False) as server:
        run = run_send_script(tmp_path, server, 30, 10)
    assert run.stdout.splitlines() == ["started", "completed 30"], run.stderr
    assert Counter(server.delivered()) == Counter(r.email for r in people(30))


DYING_MID_ANSWER = """\
from test_send_builder import build_body_then_die_mid_answer
class Provider(SendGridProvider):
    build_body = staticmethod(build_body_then_die_mid_answer)"""


def test_a_builder_process_killed_half_way_through_an_answer_never_hangs_the_send(tmp_path):
    # The pool's reader had read the answer's length and waited for the rest for ever: the sending
    # process kept a write end of that pipe open, so no end of file came (1 run in 6 hung under load).
    with SendGridServer(validate=False) as server:
        run = run_send_script(tmp_path, server, 600, 200, provider=DYING_MID_ANSWER)
    assert run.stdout.splitlines() == ["started", "completed 600"] and "Traceback" not in run.stderr, run.stderr
    assert Counter(server.delivered()) == Counter(r.email for r in people(600))


def test_where_no_second_process_can_be_started_the_send_builds_its_batches_itself(tmp_path, monkeypatch):
    monkeypatch.setattr(builders, "SECOND_PROCESS_FROM", 1)

    def no_processes(*args, **kwargs):
        raise OSError(38, "Function not implemented (no sem_open on this system)")

    monkeypatch.setattr(builders, "ProcessPoolExecutor", no_processes)
    with SendGridServer(validate=False) as server:
        settings = make_settings(tmp_path, {"SENDGRID_API_URL": server.url}, concurrency=4)
        connection = open_ledger(settings.database)
        report = send(settings, connection, people(50), batch_size=10)
        connection.close()
    assert report.outcome == "completed" and Counter(server.delivered()) == Counter(r.email for r in people(50))


def test_the_builder_makes_a_first_sends_link_token_digests_as_this_process_would(tmp_path, monkeypatch):
    from campaign.link_tokens import token_digest
    from campaign.personalize import recipient_token

    monkeypatch.setattr(builders, "DIGEST_PART", 128)   # in parts: 128, 128 and 44
    settings = make_settings(tmp_path, {"SENDGRID_API_URL": "http://127.0.0.1:9"}, concurrency=2)
    builder = builders.SecondProcess(small_issue(), settings, build_body, sandbox=False)
    try:
        emails = [r.email for r in people(300)]
        parts = builder.token_digests(emails)
        made = [(list(part), future.result(timeout=30)) for part, future in parts]
    finally:
        builder.close()
    assert [part for part, _ in made] == [emails[:128], emails[128:256], emails[256:]]
    assert b"".join(digests for _, digests in made) == b"".join(
        token_digest(recipient_token(email, settings.token_secret)) for email in emails)


@NEEDS_PROC
def test_link_token_digests_a_dead_builder_cannot_make_are_left_to_this_process(tmp_path):
    settings = make_settings(tmp_path, {"SENDGRID_API_URL": "http://127.0.0.1:9"}, concurrency=2)
    builder = builders.SecondProcess(small_issue(), settings, build_body, sandbox=False)
    try:
        child, = [pid for pid in children_of(os.getpid()) if b"spawn_main" in command_line(pid)]
        os.kill(child, signal.SIGKILL)                # the out-of-memory killer, say
        [(_, made)] = builder.token_digests([r.email for r in people(3)])
        assert made is None or made.exception(timeout=30) is not None   # MadeDigests then makes them here
    finally:
        builder.close()


def test_a_first_sends_first_batches_are_built_while_the_audience_is_frozen_and_each_is_built_once(
        tmp_path, monkeypatch, second_process):
    from campaign.send import loop

    monkeypatch.setattr(builders, "BUILT_DURING_FREEZE", 3)
    events: list[str] = []
    submit, start = builders.SecondProcess.submit, loop.RunRecord.start

    def submitted(self, index, recipients):
        if index not in self._ahead:
            events.append(f"built {index}")
        submit(self, index, recipients)

    def started(*args, **kwargs):
        run = start(*args, **kwargs)
        events.append("frozen")
        return run

    monkeypatch.setattr(builders.SecondProcess, "submit", submitted)
    monkeypatch.setattr(loop.RunRecord, "start", staticmethod(started))
    with SendGridServer() as server:
        settings = make_settings(tmp_path, {"SENDGRID_API_URL": server.url}, concurrency=4)
        connection = open_ledger(settings.database)
        first = send(settings, connection, people(100), batch_size=10)
        assert events[:4] == ["built 1", "built 2", "built 3", "frozen"]
        assert sorted(events[4:]) == sorted(f"built {index}" for index in range(4, 11))   # none built twice
        events.clear()
        again = send(settings, connection, people(130), batch_size=10)   # a resume: 30 new people
        connection.close()
    assert events[0] == "frozen"   # nothing is built before a resume's freeze
    assert first.counts["accepted"] == 100 and again.counts["accepted"] == 130
    assert Counter(server.delivered()) == Counter(r.email for r in people(130))   # each once
    assert not [r for r in server.mail_sends() if r.errors], "every body valid against SendGrid's schema"
    assert len(second_process) == 10 + 3


def test_a_batch_built_ahead_for_recipients_the_send_no_longer_has_is_forgotten(tmp_path):
    settings = make_settings(tmp_path, {"SENDGRID_API_URL": "http://127.0.0.1:9"}, concurrency=2)
    first, second, other = people(2), people(2, start=2), people(2, start=4)
    builder = builders.SecondProcess(small_issue(), settings, build_body, sandbox=False)
    try:
        builder.build_first([first, second])
        builder.keep_if_unchanged([first, [second[0], other[1]]])
        batch, _ = builder.batch(1, "30-1-1")
        assert [e.email for e in batch.envelopes] == [r.email for r in first] and batch.batch_id == "30-1-1"
        with pytest.raises(KeyError):   # built here instead, for the people the send now has
            builder.batch(2, "30-1-2")
    finally:
        builder.close()
