"""What DKIM signing costs per SMTP message (issue 15), on issue 30 as it is really sent.

    .venv/bin/python bench/bench_dkim.py [MESSAGES]

Builds MESSAGES complete messages for distinct recipients of issue 30 (mime.build_message,
as the SMTP provider does), then signs each with a fresh 2048-bit RSA key through
campaign.dkim_signing (dkimpy: relaxed/relaxed canonicalisation, rsa-sha256). Prints the
median build and sign time per message; run on its own, never as a test.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from campaign.audience import Recipient  # noqa: E402
from campaign.config import load_settings  # noqa: E402
from campaign.dkim_signing import DkimSigner  # noqa: E402
from campaign.mime import POLICY, build_message  # noqa: E402
from campaign.personalize import envelope_for  # noqa: E402
from campaign.render import render_issue  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(count: int) -> None:
    settings = load_settings(ROOT / "campaign.toml", environ={"CAMPAIGN_TOKEN_SECRET": "bench-secret"})
    issue = render_issue(settings, 30)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    signer = DkimSigner("wego.example.org", "bench", key)
    builds, signs, size = [], [], 0
    for n in range(count):
        recipient = Recipient(email=f"person{n:05d}@example.org", name=f"Person {n}", lists=("members",),
                              fields={"name": f"Person {n}", "city": "Seoul", "organisation": "City",
                                      "country": "Korea"}, line=n + 2)
        envelope = envelope_for(recipient, settings, 30)
        start = time.perf_counter()
        data = build_message(issue, envelope, sender=settings.sender, links=settings.links).as_bytes(policy=POLICY)
        built = time.perf_counter()
        signer.sign(data)
        signs.append(time.perf_counter() - built)
        builds.append(built - start)
        size = len(data)
    print(f"{count} messages of {size / 1024:.0f} KB: build median {statistics.median(builds) * 1000:.1f} ms, "
          f"DKIM sign median {statistics.median(signs) * 1000:.1f} ms "
          f"(best {min(signs) * 1000:.1f} ms) -> at most {1 / statistics.median(signs):,.0f} signed messages/s "
          "on one core")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
