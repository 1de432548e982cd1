"""A real spam filter does not punish what instrument adds: Debian's SpamAssassin, local tests
only (`-L`, no network), scores a realistic newsletter instrumented with the pixel, the click
links and the honeypot no higher than the same email without the honeypot, and no higher than
the untracked original plus what tracking itself costs (named rules, see docs/tracking/instrumenting.md).

`make setup` installs spamassassin (check-spamassassin); without it this test fails, it does
not skip."""

from __future__ import annotations

import mailbox
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pytest

from mailpixel.ops.instrument import Instrumenter, honeypot_html
from tests.conftest import FIXTURES

SPAMASSASSIN = "spamassassin"
NEWSLETTER = (FIXTURES / "newsletter.html").read_text(encoding="utf-8")
SHORT = (
    "<html><body><p>Hello Ada, our December notes are out.</p>"
    '<p><a href="https://www.plantshop.example/guides/winter-care">Read the winter care guide</a></p>'
    "</body></html>"
)
TEXT = "December notes from the greenhouse\n\nRead them at https://www.plantshop.example/guides/winter-care\n"
HOSTS = {
    "own domain": "https://t.plantshop.example",
    "execute-api": "https://0a1b2c3d4e.execute-api.eu-west-1.amazonaws.com",
}
# What tracking itself costs: a host name of hex digits (API Gateway's ids often are), and the
# pixel turning a short HTML part into one "with images" that SpamAssassin bins by length.
TRACKING_RULES = re.compile(r"URI_HEX|HTML_IMAGE_ONLY_\d\d")


@dataclass(frozen=True)
class Score:
    total: float
    rules: dict[str, float]


def message(html: str, multipart: bool, name: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "The Plant Shop <news@plantshop.example>"
    msg["To"] = "ada@example.org"
    msg["Subject"] = "December notes from the greenhouse"
    msg["Date"] = format_datetime(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    msg["Message-ID"] = f"<{name}.december-2026@plantshop.example>"
    if multipart:
        msg.set_content(TEXT)
        msg.add_alternative(html, subtype="html")
    else:
        msg.set_content(html, subtype="html")
    return msg


def scores(messages: dict[str, EmailMessage], tmp: Path) -> dict[str, Score]:
    """Every message scored by one spamassassin run (its start-up is most of the time)."""
    assert shutil.which(SPAMASSASSIN), (
        "spamassassin is missing: `make setup` installs it (check-spamassassin)"
    )
    box = tmp / "in.mbox"
    with box.open("w", encoding="utf-8") as fh:
        for msg in messages.values():
            fh.write("From news@plantshop.example Mon Dec  7 09:00:00 2026\n" + msg.as_string() + "\n")
    run = subprocess.run(
        [SPAMASSASSIN, "-L", "--mbox", "--cf=add_header all Scores _TESTSSCORES(,)_"],
        stdin=box.open("rb"),
        capture_output=True,
        timeout=300,
        check=True,
    )
    (tmp / "out.mbox").write_bytes(run.stdout)
    found: dict[str, Score] = {}
    for scored in mailbox.mbox(tmp / "out.mbox"):
        name = str(scored["Message-ID"]).strip("<>").split(".")[0]
        pairs = re.sub(r"\s+", "", str(scored["X-Spam-Scores"] or "")).split(",")
        rules = {rule: float(points) for rule, points in (pair.split("=") for pair in pairs if pair)}
        total = re.search(r"score=(-?[\d.]+)", str(scored["X-Spam-Status"]))
        assert total is not None
        found[name] = Score(float(total.group(1)), rules)
    assert set(found) == set(messages)
    return found


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Score]]:
    messages: dict[str, EmailMessage] = {}
    for form, multipart in (("multipart", True), ("htmlonly", False)):
        messages[f"original-{form}"] = message(NEWSLETTER, multipart, f"original-{form}")
        for host_name, base in HOSTS.items():
            for honeypot in (False, True):
                email = Instrumenter(
                    NEWSLETTER, email_id="december", base_url=base, secret="s", honeypot=honeypot
                )
                html = email.render("ada-1")
                assert ("hp=1" in html) is honeypot
                key = f"{'honeypot' if honeypot else 'tracked'}-{form}-{host_name.replace(' ', '')}"
                messages[key] = message(html, multipart, key)
    # A short email: instrument leaves the honeypot out; forced in, it moves the email to a worse
    # HTML_IMAGE_ONLY bin (the reason).
    short = Instrumenter(SHORT, email_id="december", base_url=HOSTS["own domain"], secret="s")
    messages["shortoriginal-htmlonly"] = message(SHORT, False, "shortoriginal-htmlonly")
    messages["shorttracked-htmlonly"] = message(short.render("ada-1"), False, "shorttracked-htmlonly")
    trap = honeypot_html(short.signer.url(short.template.links[0].destination, "ada-1", honeypot=True))
    forced = short.render("ada-1").replace("</body>", trap + "</body>")
    messages["shortforced-htmlonly"] = message(forced, False, "shortforced-htmlonly")
    yield scores(messages, tmp_path_factory.mktemp("spam"))


@pytest.mark.parametrize("host", [h.replace(" ", "") for h in HOSTS])
@pytest.mark.parametrize("form", ["multipart", "htmlonly"])
def test_the_honeypot_costs_nothing(scored: dict[str, Score], form: str, host: str) -> None:
    tracked, honeypot = scored[f"tracked-{form}-{host}"], scored[f"honeypot-{form}-{host}"]
    assert honeypot.total <= tracked.total
    assert set(honeypot.rules) <= set(tracked.rules)  # no rule for hidden links, tiny fonts, …


@pytest.mark.parametrize("host", [h.replace(" ", "") for h in HOSTS])
@pytest.mark.parametrize("form", ["multipart", "htmlonly"])
def test_tracking_costs_only_what_tracking_itself_costs(
    scored: dict[str, Score], form: str, host: str
) -> None:
    original, tracked = scored[f"original-{form}"], scored[f"honeypot-{form}-{host}"]
    added = {rule: points for rule, points in tracked.rules.items() if rule not in original.rules}
    assert all(TRACKING_RULES.fullmatch(rule) for rule in added), added
    assert tracked.total <= original.total + sum(added.values()) + 0.05  # the header's rounding


def test_a_short_email_gets_no_honeypot_because_it_would_cost(scored: dict[str, Score]) -> None:
    tracked, forced = scored["shorttracked-htmlonly"], scored["shortforced-htmlonly"]
    email = Instrumenter(SHORT, email_id="december", base_url=HOSTS["own domain"], secret="s")
    assert not email.rendered("ada-1").honeypot
    assert forced.total > tracked.total
    # Only the length bin moved: nothing scores the hiding itself.
    assert {r for r in forced.rules if not TRACKING_RULES.fullmatch(r)} == {
        r for r in tracked.rules if not TRACKING_RULES.fullmatch(r)
    }
    print({name: (score.total, sorted(score.rules)) for name, score in sorted(scored.items())})
