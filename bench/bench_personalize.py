"""How fast one rendered issue is filled per recipient, against re-rendering it per recipient.

Run by hand:  .venv/bin/python bench/bench_personalize.py [RECIPIENTS]   (bench/run.py runs it too)

The fill step is `personalize(rendered, envelope)`: subject, HTML and text
filled and escaped for one recipient. Envelopes (merge values, the per-recipient
HMAC token and links) are built beforehand and timed separately, since the send
loop builds them per batch whatever the design. The naive design renders the
whole issue for each recipient and then fills it: `render_issue` + `personalize`.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from dataclasses import dataclass

from campaign.audience import Recipient
from campaign.config import Settings, load_settings
from campaign.personalize import envelope_for, personalize
from campaign.render import RenderedIssue, render_issue

from bench_audience import CITIES, FIRST, LAST, SLUGS


FILL_PASSES = 3


@dataclass
class PersonalizeTimes:
    recipients: int
    envelope_seconds: float          # envelope_for for every recipient
    fill_seconds: float              # personalize for every recipient
    naive_runs: list[float]          # render_issue + personalize, per recipient
    message_bytes: int               # html + text of one filled message

    @property
    def fill_rate(self) -> float:
        return self.recipients / self.fill_seconds

    @property
    def envelope_rate(self) -> float:
        return self.recipients / self.envelope_seconds

    @property
    def naive_per_message(self) -> float:
        return statistics.median(self.naive_runs)

    @property
    def ratio(self) -> float:
        return self.naive_per_message / (self.fill_seconds / self.recipients)


def synthetic_recipients(count: int, lists: tuple[str, ...] = ("members",)) -> list[Recipient]:
    """Distinct, valid recipients with the columns of a real recipients file (names with & and accents)."""
    recipients = []
    for number in range(count):
        name = f"{FIRST[number % len(FIRST)]} {LAST[number % len(LAST)]}"
        if number % 97 == 0:
            name = f"{name} & <Partners>"  # something for the HTML escape to do
        city = CITIES[number % len(CITIES)]
        fields = {"name": name, "organisation": f"City Hall of {city}", "city": city, "country": "Country",
                  "language": "en"}
        recipients.append(Recipient(email=f"{SLUGS[number % len(SLUGS)]}.{number}@example.org", name=name,
                                    lists=lists, fields=fields, line=number + 2))
    return recipients


def measure_personalize(settings: Settings, rendered: RenderedIssue, count: int, naive: int) -> PersonalizeTimes:
    recipients = synthetic_recipients(count)
    gc.collect()
    started = time.perf_counter()
    envelopes = [envelope_for(recipient, settings, rendered.number) for recipient in recipients]
    envelope_seconds = time.perf_counter() - started

    passes = []
    for _ in range(FILL_PASSES):  # the median of a few passes: this 2-core VM's speed wanders by a third
        gc.collect()
        started = time.perf_counter()
        for envelope in envelopes:
            message = personalize(rendered, envelope)
        passes.append(time.perf_counter() - started)
    fill_seconds = statistics.median(passes)
    message_bytes = len(message.html.encode()) + len(message.text.encode())

    naive_runs = []
    for envelope in envelopes[:naive]:
        started = time.perf_counter()
        personalize(render_issue(settings, rendered.number), envelope)
        naive_runs.append(time.perf_counter() - started)
    return PersonalizeTimes(count, envelope_seconds, fill_seconds, naive_runs, message_bytes)


def main(count: int) -> None:
    settings = load_settings(None, environ={"CAMPAIGN_TOKEN_SECRET": "bench"})
    rendered = render_issue(settings, 30)
    times = measure_personalize(settings, rendered, count, 20)
    print(f"fill: {times.fill_rate:,.0f} messages/s ({times.recipients:,} recipients, "
          f"{times.message_bytes / 1000:.0f} kB each); envelopes: {times.envelope_rate:,.0f}/s; "
          f"re-render per recipient: {times.naive_per_message * 1000:.0f} ms; ratio {times.ratio:,.0f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
