"""How long loading and selecting the audience takes, and how much memory it keeps.

Run by hand:  .venv/bin/python bench/bench_audience.py [ROWS ...]   (default 10000 100000)
              .venv/bin/python bench/bench_audience.py 1000000          (about a minute)

For each size it writes a recipients CSV (2% duplicates in another letter case,
0.5% invalid, 10% on both lists, 1% suppressed) to a temporary folder, then
prints one table row: wall time of load_recipients and select_audience
(without tracing), tracemalloc's peak during loading, and the memory still
held by the loaded file afterwards; then a second table, the memory a send
holds for its audience: tracemalloc's peak over load + select, what the
audience alone keeps once the file's rows are let go (as `load_audience` does),
per recipient, and the peak RSS of a fresh process doing only that (its RSS
after the imports shown apart).
"""

from __future__ import annotations

import gc
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from campaign.audience import load_recipients, select_audience
from campaign.config import load_settings

FIRST = ["Ana", "Jorge", "Đorđe", "Min-ji", "Hiroshi", "Lan", "Aigerim", "Chinedu", "Sofia", "Zofia", "Priya"]
SLUGS = ["ana", "jorge", "dorde", "minji", "hiroshi", "lan", "aigerim", "chinedu", "sofia", "zofia", "priya"]
LAST = ["Souza", "Muñoz", "Petrović", "Kim", "Tanaka", "Nguyễn", "Okafor", "Lindqvist", "Wiśniewska"]
CITIES = ["São Paulo", "Lima", "Belgrade", "Seoul", "Yokohama", "Ho Chi Minh City", "Almaty", "Lagos"]


def write_file(folder: Path, rows: int, seed: int = 30) -> tuple[Path, dict[str, tuple[str, str]]]:
    rng = random.Random(seed)
    (folder / "campaign.toml").write_text(
        'recipients = "recipients.csv"\n[lists.members]\ndescription = "m"\n'
        '[lists.embassies]\ndescription = "e"\n', encoding="utf-8")
    suppressions = {}
    lines = ["email,name,organisation,city,country,lists,language"]
    for number in range(rows):
        email = f"{rng.choice(SLUGS)}.{number}@example.org"
        draw = rng.random()
        if draw < 0.02 and number:
            email = f"{rng.choice(SLUGS)}.{number - 1}@EXAMPLE.org".upper()
        elif draw < 0.025:
            email = f"broken.{number}@"
        elif draw < 0.035:
            suppressions[email] = ("unsubscribed", "2026-05-02")
        lists = "members;embassies" if rng.random() < 0.1 else rng.choice(["members", "embassies"])
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        lines.append(f'{email},{name},"City Hall of {rng.choice(CITIES)}",{rng.choice(CITIES)},Country,'
                     f"{lists},en")
    path = folder / "recipients.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, suppressions


def measure(rows: int) -> tuple:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        path, suppressions = write_file(folder, rows)
        settings = load_settings(folder / "campaign.toml", environ={})
        size_mb = path.stat().st_size / 1e6

        gc.collect()
        started = time.perf_counter()
        recipient_file = load_recipients(path, settings)
        load_seconds = time.perf_counter() - started
        started = time.perf_counter()
        audience = select_audience(recipient_file, settings.list_names(), suppressions)
        select_seconds = time.perf_counter() - started
        del recipient_file, audience

        gc.collect()
        tracemalloc.start()
        recipient_file = load_recipients(path, settings)
        kept_mb, peak_mb = (value / 1e6 for value in tracemalloc.get_traced_memory())
        audience = select_audience(recipient_file, settings.list_names(), suppressions)
        with_audience_mb = tracemalloc.get_traced_memory()[0] / 1e6
        tracemalloc.stop()
        return (rows, size_mb, load_seconds, select_seconds, peak_mb, kept_mb, with_audience_mb,
                len(audience.recipients), len(recipient_file.problems))


def measure_memory(rows: int) -> tuple:
    """(rows, recipients, peak MB of load + select, MB the audience alone keeps, its bytes per recipient,
    peak RSS MB of a process that only loads and selects, that process's RSS MB before loading)."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        path, suppressions = write_file(folder, rows)
        settings = load_settings(folder / "campaign.toml", environ={})
        gc.collect()
        tracemalloc.start()
        audience = select_audience(load_recipients(path, settings), settings.list_names(), suppressions)
        gc.collect()
        kept, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        recipients = len(audience.recipients)
        del audience
        started = subprocess.run([sys.executable, __file__, "--rss-of", str(folder)], capture_output=True,
                                 text=True, check=True).stdout.split()
        rss_mb, before_mb = float(started[0]), float(started[1])
        return rows, recipients, peak / 1e6, kept / 1e6, kept / recipients, rss_mb, before_mb


def rss_of(folder: Path) -> None:
    """In a fresh process: load and select the audience in `folder` as a send does; print peak RSS MB and the
    RSS MB before loading (imports and Python itself)."""
    settings = load_settings(folder / "campaign.toml", environ={})
    before = peak_rss_mb()
    audience = select_audience(load_recipients(settings.recipients, settings), settings.list_names(), {})
    assert audience.recipients
    print(peak_rss_mb(), before)


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a process started
    by this big one would report the parent's peak (see bench_send.LAUNCHER)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")) / 1024


def main(sizes: list[int]) -> None:
    header = ("rows", "file MB", "load s", "select s", "peak MB", "kept MB", "+audience MB", "recipients",
              "problems")
    print(" | ".join(f"{title:>12}" for title in header))
    for rows in sizes:
        rows_, size, load_s, select_s, peak, kept, with_audience, recipients, problems = measure(rows)
        print(" | ".join(f"{cell:>12}" for cell in (
            f"{rows_:,}", f"{size:.1f}", f"{load_s:.2f}", f"{select_s:.2f}", f"{peak:.1f}", f"{kept:.1f}",
            f"{with_audience:.1f}", f"{recipients:,}", f"{problems:,}")))
    print()
    header = ("rows", "recipients", "peak MB", "audience MB", "B/recipient", "peak RSS MB", "RSS at start")
    print(" | ".join(f"{title:>12}" for title in header))
    for rows in sizes:
        rows_, recipients, peak, kept, per_recipient, rss, before = measure_memory(rows)
        print(" | ".join(f"{cell:>12}" for cell in (
            f"{rows_:,}", f"{recipients:,}", f"{peak:.1f}", f"{kept:.1f}", f"{per_recipient:.0f}", f"{rss:.0f}",
            f"{before:.0f}")))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rss-of"]:
        sys.exit(rss_of(Path(sys.argv[2])))
    main([int(argument) for argument in sys.argv[1:]] or [10_000, 100_000])
