"""Ingest rate of SendGrid's Event Webhook: one signed POST of 1,000 events to `campaign serve`'s app.

Run by hand (never a test): `.venv/bin/python bench/bench_webhook.py [EVENTS] [RUNS]`.

A ledger with a real send of issue 30 to EVENTS addresses (a tenth of them `unknown`) is made in a
temporary folder; the readers' app runs under real uvicorn on 127.0.0.1; each run posts EVENTS fresh
events (delivered, opens, some bounces, spam reports, unsubscribes, processed for the unknowns),
signed with a P-256 key made here, and times the request from the first byte sent to the answer:
signature check, parsing, one ledger transaction with the effects. Then the same body is posted again
(a replay: everything is a duplicate). Prints the median and the best of RUNS.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from campaign.config import load_settings  # noqa: E402
from campaign.web.readers import create_app  # noqa: E402
from campaign.web.webhook import WEBHOOK_PATH  # noqa: E402
from web_support import Served, fetch  # noqa: E402
from webhook_support import Signer, body_of, event, record_send  # noqa: E402

KINDS = ("delivered",) * 6 + ("open", "open", "bounce", "spamreport", "unsubscribe", "deferred")


def events_for(addresses: list[str], run: int) -> list[dict]:
    items = []
    for index, address in enumerate(addresses):
        kind = "processed" if index % 10 == 0 else KINDS[index % len(KINDS)]
        items.append(event(kind, address, sg_event_id=f"bench-{run}-{index}"))
    return items


def measure(count: int, runs: int) -> dict[str, float]:
    addresses = [f"reader{number}@example.org" for number in range(count)]
    statuses = {address: ("unknown" if index % 10 == 0 else "accepted") for index, address in enumerate(addresses)}
    signer = Signer()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "campaign.toml").write_text('database = "campaign.db"\n', encoding="utf-8")
        record_send(root / "campaign.db", statuses=statuses)
        settings = load_settings(root / "campaign.toml", environ={
            "CAMPAIGN_TOKEN_SECRET": "bench-secret", "SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_key})
        fresh, replay = [], []
        with Served(create_app(settings)) as base_url:
            for run in range(runs):
                body = body_of(events_for(addresses, run))
                for timings in (fresh, replay):
                    headers = signer.headers(body)
                    start = time.perf_counter()
                    answer = fetch(base_url + WEBHOOK_PATH, "POST", body, headers)
                    timings.append(time.perf_counter() - start)
                    assert answer.status == 200, answer.text
                stored = json.loads(answer.text)
                assert stored["duplicates"] == count, stored
        return {"events": count, "bytes": len(body), "fresh_median": statistics.median(fresh),
                "fresh_best": min(fresh), "replay_median": statistics.median(replay)}


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    result = measure(count, runs)
    print(f"{result['events']:,} events in one signed POST ({result['bytes'] / 1024:.0f} kB): "
          f"median {result['fresh_median'] * 1000:.0f} ms, best {result['fresh_best'] * 1000:.0f} ms "
          f"({result['events'] / result['fresh_median']:,.0f} events/s); "
          f"the same POST replayed: median {result['replay_median'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
