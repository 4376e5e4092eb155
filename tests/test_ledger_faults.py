"""The ledger file under faults (issue 11 items 13, 14, 15): read-only, opened by many at once, someone else's."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import threading
import subprocess
import sys
from pathlib import Path

import pytest

from campaign.errors import LedgerError
from campaign.ledger import MIGRATIONS, applied_migrations, open_ledger


def _open_after(barrier, path: str, results) -> None:
    barrier.wait(timeout=60)
    try:
        open_ledger(Path(path)).close()
        results.put("ok")
    except Exception as error:  # noqa: BLE001  (the test reports whatever went wrong)
        results.put(f"{type(error).__name__}: {error}")


def test_ten_processes_opening_a_fresh_ledger_at_once_all_succeed(tmp_path):
    context = multiprocessing.get_context("spawn")
    for trial in range(3):
        path = tmp_path / f"campaign-{trial}.db"
        barrier, results = context.Barrier(10), context.Queue()
        processes = [context.Process(target=_open_after, args=(barrier, str(path), results)) for _ in range(10)]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(timeout=60)
        assert outcomes == ["ok"] * 10, outcomes
        connection = open_ledger(path)
        assert applied_migrations(connection) == [name for name, _ in MIGRATIONS]
        connection.close()


def test_another_applications_sqlite_file_is_refused_before_anything_changes(tmp_path):
    path = tmp_path / "notes.db"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    other.execute("INSERT INTO notes (text) VALUES ('keep me')")
    other.commit()
    other.close()
    before = path.read_bytes()
    with pytest.raises(LedgerError) as error:
        open_ledger(path)
    assert "not a campaign ledger" in str(error.value) and str(path) in str(error.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]          # no -wal, no -shm
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert [row[0] for row in check.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["notes"]
    check.close()


def test_a_file_that_is_not_sqlite_is_refused_without_being_changed(tmp_path):
    path = tmp_path / "campaign.db"
    path.write_text("email,name\n", encoding="utf-8")
    with pytest.raises(LedgerError, match="not a campaign ledger"):
        open_ledger(path)
    assert path.read_text(encoding="utf-8") == "email,name\n"


def _unwritable(folder: Path) -> list[str]:
    """A command prefix under which files without write permission stay unwritable, even for root."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only file cannot be simulated")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


def test_a_read_only_ledger_is_a_one_line_error(tmp_path):
    (tmp_path / "campaign.toml").write_text('database = "campaign.db"\n[lists.members]\ndescription = "m"\n',
                                            encoding="utf-8")
    open_ledger(tmp_path / "campaign.db").close()
    (tmp_path / "campaign.db").chmod(0o444)
    prefix = _unwritable(tmp_path)
    result = subprocess.run([*prefix, sys.executable, "-m", "campaign", "suppress", "add", "a@example.org",
                             "--reason", "unsubscribed", "--config", str(tmp_path / "campaign.toml")],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "CAMPAIGN_TOKEN_SECRET": "s" * 40})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "read-only" in result.stderr and "campaign.db" in result.stderr


# -- item 18: status cosmetics --------------------------------------------------------------------

def _run_that_never_reached_its_server(tmp_path, leave_in_flight: bool = False):
    from campaign.send.plan import SendOptions
    from campaign.send.record import RunRecord
    from send_support import people

    database = tmp_path / "campaign.db"
    connection = open_ledger(database)
    start = RunRecord.start(connection, 30, "real", "smtp", SendOptions(), people(3))
    if leave_in_flight:
        from campaign import ledger

        ledger.mark_in_flight(connection, 30, "real", [people(1)[0].email], "smtp", "30-1-1",
                              start.record.run_id)                       # then the process is killed
    else:
        start.record.finish("stopped", "cannot connect to 127.0.0.1:9")
    connection.close()
    return database


def test_status_names_the_provider_of_a_run_that_never_reached_its_server(tmp_path):
    from campaign.send.status import issue_status

    [kind] = issue_status(_run_that_never_reached_its_server(tmp_path), 30).kinds
    assert "(none yet)" not in kind.by_provider
    assert any("smtp" in key for key in kind.by_provider), kind.by_provider


def test_a_row_left_in_flight_by_a_killed_send_is_shown_with_a_reason(tmp_path):
    from campaign.send.status import issue_status

    [kind] = issue_status(_run_that_never_reached_its_server(tmp_path, leave_in_flight=True), 30).kinds
    [reason] = kind.problems["in_flight"]
    assert "no reason recorded" not in reason and "unknown" in reason


def test_a_forced_runs_findings_do_not_end_with_or_pass_force():
    from campaign.checks import ERROR, decide
    from campaign.checks.findings import Finding

    finding = Finding(ERROR, "link-placeholder", "issue-30/01.md", "link target is a placeholder", "fix it")
    forced = decide([finding], 30, force=True, rehearsal=False).forced_over
    assert "link target is a placeholder" in forced and "--force" in forced
    assert not forced.rstrip().endswith("or pass --force")


# -- item 19: a suppression dated in the future ------------------------------------------------------

def test_a_suppression_dated_in_the_future_is_refused(tmp_path):
    from campaign.errors import UsageError
    from campaign.suppressions import add_suppression, import_suppressions

    connection = open_ledger(tmp_path / "campaign.db")
    with pytest.raises(UsageError, match="in the future"):
        add_suppression(connection, "a@example.org", "unsubscribed", on="2999-01-01")
    (tmp_path / "s.csv").write_text("email,reason,date\nb@example.org,unsubscribed,2999-01-01\n"
                                    "c@example.org,unsubscribed,2020-01-01\n", encoding="utf-8")
    result = import_suppressions(connection, tmp_path / "s.csv")
    assert [(problem.line, "in the future" in problem.reason) for problem in result.problems] == [(2, True)]


def test_a_fresh_ledger_opens_while_another_connection_is_committing_its_first_write(tmp_path):
    # The race the ten-process test meets only sometimes, made certain: we hold a shared lock
    # and want the exclusive one for WAL while the other side, holding the reserved lock,
    # waits for ours to commit. SQLite answers "database is locked" at once, without its busy
    # timeout, so open_ledger must wait the other writer out itself.
    path = tmp_path / "campaign.db"
    other = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("PRAGMA user_version = 7")
    committer = threading.Timer(0.3, other.execute, args=("COMMIT",))
    committer.start()
    try:
        connection = open_ledger(path)
    finally:
        committer.join()
        other.close()
    assert applied_migrations(connection) == [name for name, _ in MIGRATIONS]
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()
