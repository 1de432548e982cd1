"""Instrument an HTML email: the pixel before `</body>`, every trackable link a signed click URL.

For senders who render emails in code:

    from mailpixel.ops.instrument import Instrumenter

    email = Instrumenter(html, email_id="newsletter-42", base_url="https://px.example.com",
                         secret="…")
    for user_id in recipients:
        send(user_id, email.render(user_id))

The template is tokenized once (`EmailTemplate`): literal text and slots for the rewritten
`href` values and the pixel. Rendering a recipient is joining strings and one HMAC per link
(`signing.ClickSigner` hashes each link's common part once), so 10,000 recipients of a 50-link
email take seconds (`bench/clicks.py`).

The tokenizer is the standard library's `html.parser`: it is maintained with CPython, has no
dependency to ship, and, unlike html5lib or selectolax (which build a tree and serialize it
again), reports where each start tag begins and its exact source text. Only the value of a
rewritten `href` changes; every other byte of the document, comments, conditional comments,
entities, odd white space and invalid bytes included, is written back as it was.

Never rewritten: `mailto:`, `tel:` and every scheme but http(s), in-page anchors (`#…`),
relative URLs, links marked `data-mailpixel="off"`, hrefs holding a merge-tag placeholder
(`{{…}}`, `*|…|*`, `%%…%%`, `{$…}`), and any destination `/click` would refuse to follow.
Links inside comments (Outlook's `<!--[if mso]>` VML buttons) are not seen by the tokenizer and
stay as they are.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser

from mailpixel.pixel.click import destination_problem
from mailpixel.signing import ClickSigner, make_url

LINK_TAGS = ("a", "area")
OPT_OUT_ATTRIBUTE = "data-mailpixel"
MERGE_TAG = re.compile(r"\{\{.*?\}\}|\*\|.*?\|\*|%%.*?%%|\{\$.*?\}", re.DOTALL)
# One attribute in a start tag's source: name, then an optional value (quoted or not).
ATTRIBUTE = re.compile(
    r"""(?P<name>[^\s"'>/=]+)(?:\s*=\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<uq>[^\s>]+)))?"""
)
# What browsers strip from both ends of a URL attribute (ASCII white space and C0 controls).
URL_STRIP = "".join(chr(c) for c in range(0x21))


def pixel_img(url: str) -> str:
    return (
        f'<img src="{html.escape(url, quote=True)}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0;" />'
    )


def trackable(href: str, attrs: dict[str, str | None]) -> str | None:
    """The destination a link's click URL should point to, or None to leave the link alone."""
    if (attrs.get(OPT_OUT_ATTRIBUTE) or "").strip().lower() == "off":
        return None
    if MERGE_TAG.search(href):
        return None
    destination = href.strip(URL_STRIP)
    if destination_problem(destination):  # mailto:, tel:, #anchors, relative, javascript:, …
        return None
    return destination


@dataclass(frozen=True)
class Link:
    """A slot: the `href` value of one link. `quote` is how the value is written back."""

    destination: str
    quote: str


class Pixel:
    """A slot: where the pixel goes."""


Piece = str | Link | Pixel


class _LinkFinder(HTMLParser):
    """Finds each trackable link's `href` value (source offsets) and the last `</body>`."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=False)
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.links: list[tuple[int, int, Link]] = []
        self.body_end: int | None = None

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in LINK_TAGS:
            return
        first: dict[str, str | None] = {}
        for name, value in attrs:
            first.setdefault(name, value)  # a repeated attribute: browsers keep the first
        href = first.get("href")
        if href is None or trackable(href, first) is None:
            return
        source = self.get_starttag_text() or ""
        start = self._offset()
        for match in ATTRIBUTE.finditer(source, len(tag) + 1):
            if match.group("name").lower() != "href":
                continue
            group = next(g for g in ("dq", "sq", "uq") if match.group(g) is not None)
            quote = {"dq": "", "sq": "", "uq": '"'}[group]
            destination = trackable(html.unescape(match.group(group)), first)
            if destination is not None:
                span = match.span(group)
                self.links.append((start + span[0], start + span[1], Link(destination, quote)))
            return

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_end = self._offset()


class EmailTemplate:
    """An HTML email cut into literal text and slots, once; `pieces` rebuilds it exactly."""

    def __init__(self, text: str) -> None:
        finder = _LinkFinder(text)
        finder.feed(text)
        finder.close()
        cuts: list[tuple[int, int, Link | Pixel]] = list(finder.links)
        pixel_at = finder.body_end if finder.body_end is not None else len(text)
        cuts.append((pixel_at, pixel_at, Pixel()))
        cuts.sort(key=lambda cut: (cut[0], isinstance(cut[2], Link)))
        self.pieces: list[Piece] = []
        position = 0
        for start, end, slot in cuts:
            self.pieces.append(text[position:start])
            self.pieces.append(slot)
            position = end
        self.pieces.append(text[position:])

    @property
    def links(self) -> list[Link]:
        return [piece for piece in self.pieces if isinstance(piece, Link)]


class Instrumenter:
    """Renders one HTML email per recipient, with its pixel and signed click URLs.

    `html_text` is the email as text (decode bytes with `errors="surrogateescape"` to keep even
    invalid bytes). `t` (epoch seconds) goes into every URL when given. With
    `email_scoped=True`, `render` takes an ESP merge tag instead of a user id: the click
    signatures cover the email and the link but not the user (see the README's trade-off), and
    the pixel carries no user id, so opens are counted per email only.
    """

    def __init__(
        self,
        html_text: str,
        *,
        email_id: str,
        base_url: str,
        secret: str | None,
        t: int | None = None,
        email_scoped: bool = False,
    ) -> None:
        self.template = EmailTemplate(html_text)
        self.signer = ClickSigner(base_url, email_id, secret, t, scoped=email_scoped)
        self._pixel_url = functools.partial(make_url, base_url, email_id, secret=secret, t=t)

    def pixel_url(self, user_id: str) -> str:
        return self._pixel_url("" if self.signer.email_scoped else user_id)

    def render(self, user_id: str) -> str:
        """The email for `user_id` (or, email-scoped, for the merge tag given as `user_id`)."""
        out: list[str] = []
        for piece in self.template.pieces:
            if isinstance(piece, str):
                out.append(piece)
            elif isinstance(piece, Link):
                url = html.escape(self.signer.url(piece.destination, user_id), quote=True)
                out.append(f"{piece.quote}{url}{piece.quote}")
            else:
                out.append(pixel_img(self.pixel_url(user_id)))
        return "".join(out)

    def render_all(self, user_ids: Iterator[str]) -> Iterator[str]:
        return (self.render(user_id) for user_id in user_ids)
