"""Shared pieces of the send tests: settings, a small rendered issue, recipients, a driver for kill tests.

Run as a script it is the driver: it sends issue 30 to N generated recipients through
the real SendGrid provider at SENDGRID_API_URL, recording in the ledger named on the
command line, so a test can SIGKILL it at any moment:

    python tests/send_support.py LEDGER COUNT BATCH_SIZE [--resend-unknown] [--smtp] [--concurrency N]
                                 [--connections N]
                                 [--second-process]

(--smtp: through the real SMTP provider at SMTP_HOST and SMTP_PORT instead, over --connections; --second-process:
batches built in a second process however few the recipients.)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from campaign.audience import Recipient  # noqa: E402
from campaign.config import load_settings  # noqa: E402
from campaign.merge import MergeTemplate  # noqa: E402
from campaign.render import RenderedIssue  # noqa: E402

API_KEY = "SG.test-key-not-secret"
CONFIG = (
    'recipients = "recipients.csv"\ndatabase = "campaign.db"\n'
    '[lists.members]\ndescription = "Member cities"\n'
    '[lists.embassies]\ndescription = "Embassy contacts"\n'
    # One batch in flight: these tests script faults and kills in request order. The concurrent
    # path ([sendgrid] concurrency, default 4) has its own tests in test_send_concurrency.py.
    '[sendgrid]\nconcurrency = 1\n'
)


def make_settings(root: Path, environ: dict | None = None, concurrency: int = 1, connections: int = 1):
    config = root / "campaign.toml"
    if not config.exists():
        text = CONFIG.replace("concurrency = 1", f"concurrency = {concurrency}")
        config.write_text(text + f"[smtp]\nconnections = {connections}\n", encoding="utf-8")
    environ = {"SENDGRID_API_KEY": API_KEY, "CAMPAIGN_TOKEN_SECRET": "test-secret", **(environ or {})}
    return load_settings(config, environ=environ)


def small_issue(number: int = 30) -> RenderedIssue:
    """A rendered issue built directly from merge templates (no layouts needed)."""
    return RenderedIssue(
        number=number,
        subject=MergeTemplate("WeGO Newsletter 30 for [[name|colleague]]"),
        html=MergeTemplate('<html><body><p>Dear [[name|colleague]],</p>'
                           '<p><a href="[[unsubscribe_url]]">Unsubscribe</a></p></body></html>'),
        text=MergeTemplate("Dear [[name|colleague]],\n\nUnsubscribe: [[unsubscribe_url]]\n"),
        preheader="Smart cities news",
    )


def people(count: int, lists: tuple[str, ...] = ("members",), start: int = 0) -> list[Recipient]:
    return [Recipient(email=f"person{n:05d}@example.org", name=f"Person {n}", lists=lists,
                      fields={"name": f"Person {n}"}, line=n + 2)
            for n in range(start, start + count)]


def main(argv: list[str]) -> int:
    from campaign.ledger import open_ledger
    from campaign.providers.sendgrid import SendGridProvider
    from campaign.providers.smtp import SmtpProvider
    from campaign.send import RetryPolicy, SendOptions, builder, send_issue

    if "--second-process" in argv:
        builder.SECOND_PROCESS_FROM = 1

    ledger_path, count, batch_size = Path(argv[0]), int(argv[1]), int(argv[2])
    concurrency = int(argv[argv.index("--concurrency") + 1]) if "--concurrency" in argv else 1
    connections = int(argv[argv.index("--connections") + 1]) if "--connections" in argv else 1
    settings = make_settings(ledger_path.parent, dict(__import__("os").environ), concurrency, connections)
    connection = open_ledger(ledger_path)
    provider = SmtpProvider(settings) if "--smtp" in argv else SendGridProvider(settings)
    report = send_issue(connection, small_issue(), people(count), provider, settings,
                        SendOptions(batch_size=batch_size, resend_unknown="--resend-unknown" in argv),
                        policy=RetryPolicy(base_delay=0.01, max_delay=0.05), sleep=lambda seconds: None)
    print(report.outcome, report.counts, report.message, flush=True)
    return {"completed": 0, "interrupted": 130}.get(report.outcome, 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
