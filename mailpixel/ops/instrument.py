"""Instrument an HTML email: the pixel, every trackable link a signed click URL, a honeypot link.

For senders who render emails in code:

    from mailpixel.ops.instrument import Instrumenter

    email = Instrumenter(html, email_id="newsletter-42", base_url="https://px.example.com",
                         secret="…")
    for user_id in recipients:
        send(user_id, email.render(user_id))

The template is tokenized once (`EmailTemplate`): literal text and slots for the rewritten
`href` values, the pixel and the honeypot. Rendering a recipient is joining strings and one HMAC
per link (`signing.ClickSigner` hashes each link's common part once), so 10,000 recipients of a
50-link email take seconds (`bench/clicks.py`).

Where tags are: the standard library's `html.parser` finds each start tag (it skips comments,
`<script>` and `<style>` as browsers do, and reports where a tag begins). What a tag's attributes
are: `read_start_tag`, the WHATWG tokenizer's attribute states written out, because a regular
expression (or Python's tolerant attribute pattern) and a browser can disagree on a hostile tag
such as `<a x"href="https://evil.example/" href="https://good.example/">`. The href rewritten is
the one a browser follows (the first `href`, as the browser keeps the first of a repeated
attribute); a tag the two readers see ending in different places is left alone, with a warning.
The value is decoded as a browser decodes an attribute value (`attribute_value`): a legacy
entity without `;` before `=` or a letter or digit stays as written, so `&currency=EUR` is not
`¤cy=EUR`. Only the value of a rewritten `href` changes; every other byte of the document,
comments, conditional comments, entities, odd white space and invalid bytes included, is written
back as it was.

Never rewritten, silently: `mailto:`, `tel:` and every scheme but http(s), in-page anchors
(`#…`), relative URLs, links marked `data-mailpixel="off"`, hrefs holding a merge-tag
placeholder (`{{…}}`, `*|…|*`, `%%…%%`, `{$…}`). Never rewritten, with a warning: an http(s)
link `/click` would refuse to follow (`destination_problem`). Links inside comments (Outlook's
`<!--[if mso]>` VML buttons) are not seen by the tokenizer and stay as they are.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.entities import html5 as NAMED_REFERENCES
from html.parser import HTMLParser

from mailpixel.pixel.click import destination_problem
from mailpixel.signing import ClickSigner, make_url

LINK_TAGS = ("a", "area")
OPT_OUT_ATTRIBUTE = "data-mailpixel"
MERGE_TAG = re.compile(r"\{\{.*?\}\}|\*\|.*?\|\*|%%.*?%%|\{\$.*?\}", re.DOTALL)
# What browsers strip from both ends of a URL attribute (ASCII white space and C0 controls).
URL_STRIP = "".join(chr(c) for c in range(0x21))

# Per recipient, what they agreed to (the recipients CSV's consent column): everything, clicks
# only (no pixel), or nothing (the email exactly as written).
TRACK_ALL = "all"
TRACK_CLICKS = "clicks"
TRACK_NONE = "none"
TRACKING_VALUES = (TRACK_ALL, TRACK_CLICKS, TRACK_NONE)
PIXEL_TOP = "top"
PIXEL_BOTTOM = "bottom"
PIXEL_POSITIONS = (PIXEL_BOTTOM, PIXEL_TOP)
# Gmail shows "[Message clipped]" past about 102 KB of HTML, and a pixel past the cut never
# loads. Published as "102KB" (Gmail's help and ESP guides), measured between 101 and 105 KB
# by senders (spamresource.com, 2022): 102,000 bytes warns at the earliest of them.
GMAIL_CLIP_BYTES = 102_000

# The HTML tokenizer's white space, and the longest name in its named character references.
HTML_SPACE = "\t\n\f\r "
_LONGEST_NAME = max(map(len, NAMED_REFERENCES))
# Numeric references to C1 controls mean the windows-1252 character (WHATWG, numeric character
# reference end state).
_C1_REPLACEMENTS = dict(
    zip(
        [0x80, *range(0x82, 0x8D), 0x8E, *range(0x91, 0x9D), 0x9E, 0x9F],
        "€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ",
        strict=True,
    )
)


def _numeric_reference(raw: str, at: int) -> tuple[str, int] | None:
    """The character of the numeric reference whose digits start at `at` (after `&#`), and
    where it ends; None when no digit follows (then `&#` stays as written)."""
    hexadecimal = raw[at : at + 1] in ("x", "X")
    start = at + 1 if hexadecimal else at
    digits = "0123456789abcdefABCDEF" if hexadecimal else "0123456789"
    end = start
    while end < len(raw) and raw[end] in digits:
        end += 1
    if end == start:
        return None
    significant = raw[start:end].lstrip("0")
    # More than 8 significant digits is past U+10FFFF in either base; int() of thousands of
    # digits would raise, and the browser gives U+FFFD anyway.
    number = 0x110000 if len(significant) > 8 else int(significant or "0", 16 if hexadecimal else 10)
    if raw[end : end + 1] == ";":
        end += 1
    if number == 0 or number > 0x10FFFF or 0xD800 <= number <= 0xDFFF:
        return "\ufffd", end
    return _C1_REPLACEMENTS.get(number, chr(number)), end


def attribute_value(raw: str) -> str:
    """An attribute value's source text decoded as a browser decodes it (WHATWG, character
    reference state, in an attribute).

    Named references are matched longest first; a match that does not end in `;` and is
    followed by `=` or an ASCII letter or digit stays as written, so `?a=1&currency=EUR` keeps
    its `&currency` while `&amp` before the end or a `/` is `&`. Unknown names and `&#` without
    digits stay as written.
    """
    out: list[str] = []
    position = 0
    while (amp := raw.find("&", position)) >= 0:
        out.append(raw[position:amp])
        position = amp + 1
        following = raw[position : position + 1]
        if following == "#":
            numeric = _numeric_reference(raw, position + 1)
            if numeric is None:
                out.append("&")
            else:
                out.append(numeric[0])
                position = numeric[1]
            continue
        if not (following.isascii() and following.isalnum()):
            out.append("&")
            continue
        for length in range(min(_LONGEST_NAME, len(raw) - position), 0, -1):
            name = raw[position : position + length]
            if name in NAMED_REFERENCES:
                break
        else:
            out.append("&")
            continue
        after = raw[position + length : position + length + 1]
        if not name.endswith(";") and (after == "=" or (after.isascii() and after.isalnum())):
            out.append("&" + name)  # legacy name glued to more text: the browser keeps it as is
        else:
            out.append(NAMED_REFERENCES[name])
        position += length
    out.append(raw[position:])
    return "".join(out)


@dataclass(frozen=True)
class Attribute:
    """One attribute as a browser reads it: its value's source span (`value` is None for an
    attribute without `=`), and whether the value was quoted."""

    value: str | None
    start: int
    end: int
    quoted: bool


def read_start_tag(text: str, start: int) -> tuple[int, dict[str, Attribute]] | None:
    """The start tag at `text[start]` (a `<`) read as the WHATWG tokenizer reads it: where it
    ends (just after its `>`) and its attributes by lower-cased name, the first of a repeated
    name kept as browsers keep it. None when the tag never ends.

    The states: a name runs to white space, `/`, `>` or `=` (a `"`, `'` or `<` in it is part of
    the name; a name may start with `=`); a value is quoted, or runs to white space or `>`.
    """
    size = len(text)
    i = start + 1
    while i < size and text[i] not in HTML_SPACE and text[i] not in "/>":
        i += 1
    attributes: dict[str, Attribute] = {}
    while i < size:
        char = text[i]
        if char in HTML_SPACE or char == "/":  # a `/` not before `>` is read as white space
            i += 1
            continue
        if char == ">":
            return i + 1, attributes
        name_start = i
        i += 1
        while i < size and text[i] not in HTML_SPACE and text[i] not in "/>=":
            i += 1
        name = text[name_start:i].translate(_ASCII_LOWER)
        while i < size and text[i] in HTML_SPACE:
            i += 1
        attribute = Attribute(None, i, i, False)
        if i < size and text[i] == "=":
            i += 1
            while i < size and text[i] in HTML_SPACE:
                i += 1
            if i < size and text[i] in "\"'":
                close = text.find(text[i], i + 1)
                if close < 0:
                    return None
                attribute = Attribute(text[i + 1 : close], i + 1, close, True)
                i = close + 1
            else:
                value_start = i
                while i < size and text[i] not in HTML_SPACE and text[i] != ">":
                    i += 1
                attribute = Attribute(text[value_start:i], value_start, i, False)
        attributes.setdefault(name, attribute)
    return None


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def pixel_img(url: str) -> str:
    return (
        f'<img src="{html.escape(url, quote=True)}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0;" />'
    )


# The honeypot: a link no person sees, reaches with the keyboard or hears from a screen reader,
# hidden by means that fail independently, because mail clients strip CSS unevenly:
# - `display:none` on the wrapper and the link (Gmail, Apple Mail, most webmails keep it);
# - `mso-hide:all` (Outlook for Windows, whose Word engine ignores display:none on some tags);
# - no size: max-height/max-width 0, overflow hidden, font-size and line-height 0 (for clients
#   that drop `display`);
# - nothing to see even with every style stripped: no text at all, so the link has no box, and
#   an inline element with no content gives its line no height.
# `aria-hidden="true"` on both and `tabindex="-1"` keep it out of the accessibility tree and the
# tab order; it sits at the end of the body, after the content a screen reader reads.
HONEYPOT_STYLE = (
    "display:none;mso-hide:all;max-height:0;max-width:0;overflow:hidden;font-size:0;line-height:0;"
)


# SpamAssassin scores an HTML part holding an image by its raw length in bins up to 3,200
# (`HTML_IMAGE_ONLY_04` … `_32`, 0.6 to 2.1 points, not growing with size), so on an email that
# short the honeypot's few hundred characters can move it to a worse bin (measured: 0.6 → 1.4).
# The honeypot goes only into emails already longer than that, where it costs nothing.
HONEYPOT_MIN_LENGTH = 3200


def honeypot_html(url: str) -> str:
    return (
        f'<div aria-hidden="true" style="{HONEYPOT_STYLE}">'
        f'<a href="{html.escape(url, quote=True)}" tabindex="-1" aria-hidden="true" '
        f'style="{HONEYPOT_STYLE}text-decoration:none;"></a></div>'
    )


def trackable(href: str, attrs: dict[str, str | None]) -> tuple[str | None, str | None]:
    """(the destination a link's click URL should point to, None), or (None, why) to leave the
    link alone: `why` is None for links nobody tracks (mailto:, anchors, relative, merge tags,
    opted out), and `/click`'s reason when it would refuse an http(s) link (the sender is told)."""
    if (attrs.get(OPT_OUT_ATTRIBUTE) or "").strip().lower() == "off":
        return None, None
    if MERGE_TAG.search(href):
        return None, None
    destination = href.strip(URL_STRIP)
    problem = destination_problem(destination)
    if problem is None:
        return destination, None
    if destination.lower().startswith(("http:", "https:")):
        return None, problem
    return None, None  # mailto:, tel:, #anchors, relative, javascript:, …


@dataclass(frozen=True)
class Link:
    """A slot: the `href` value of one link. `quote` is how the value is written back."""

    destination: str
    quote: str


class Pixel:
    """A slot: where the pixel goes."""


class Honeypot:
    """A slot: where the honeypot link goes (the end of the body)."""


Piece = str | Link | Pixel | Honeypot


class _LinkFinder(HTMLParser):
    """Finds each trackable link's `href` value (source offsets), the end of the `<body>` start
    tag and the last `</body>`, and what a sender should hear about."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=False)
        self._text = text
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.links: list[tuple[int, int, Link]] = []
        self.body_start: int | None = None
        self.body_end: int | None = None
        self.warnings: list[str] = []

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body" and self.body_start is None:
            self.body_start = self._offset() + len(self.get_starttag_text() or "")
        if tag not in LINK_TAGS:
            return
        start = self._offset()
        read = read_start_tag(self._text, start)
        line = self.getpos()[0]
        if read is None or read[0] != start + len(self.get_starttag_text() or ""):
            if any(name == "href" for name, _ in attrs):
                self.warnings.append(
                    f"line {line}: <{tag}> left alone: browsers may read this tag differently"
                )
            return
        attributes = read[1]
        href = attributes.get("href")
        if href is None or href.value is None:
            return
        decoded = {
            name: None if attribute.value is None else attribute_value(attribute.value)
            for name, attribute in attributes.items()
        }
        destination, problem = trackable(decoded["href"] or "", decoded)
        if destination is not None:
            self.links.append((href.start, href.end, Link(destination, "" if href.quoted else '"')))
        elif problem is not None:
            shown = (decoded["href"] or "").strip(URL_STRIP)
            self.warnings.append(
                f"line {line}: link {shown[:200]!r} left alone: /click would refuse it ({problem})"
            )

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_end = self._offset()


class EmailTemplate:
    """An HTML email cut into literal text and slots, once; `pieces` rebuilds it exactly.

    `pixel_position` is `bottom` (before the last `</body>`) or `top` (right after `<body …>`);
    without a `<body>` both are the end of the document. The honeypot, when asked for and when
    the email has a trackable link, goes at the bottom.
    """

    def __init__(self, text: str, pixel_position: str = PIXEL_BOTTOM, honeypot: bool = False) -> None:
        if pixel_position not in PIXEL_POSITIONS:
            raise ValueError(f"pixel position must be one of {', '.join(PIXEL_POSITIONS)}")
        self.text = text
        self.pixel_position = pixel_position
        finder = _LinkFinder(text)
        finder.feed(text)
        finder.close()
        self.warnings = finder.warnings
        cuts: list[tuple[int, int, Link | Pixel | Honeypot]] = list(finder.links)
        bottom = finder.body_end if finder.body_end is not None else len(text)
        if pixel_position == PIXEL_TOP and finder.body_start is None:
            self.warnings.append("no <body> start tag: the pixel goes at the end")
        top = finder.body_start if finder.body_start is not None else bottom
        # The honeypot's destination is the email's first link: a scanner following it lands on
        # a page of the sender's, like every other link it follows.
        self.honeypot_destination = finder.links[0][2].destination if honeypot and finder.links else None
        if self.honeypot_destination is not None:
            cuts.append((bottom, bottom, Honeypot()))
        pixel_at = top if pixel_position == PIXEL_TOP else bottom
        cuts.append((pixel_at, pixel_at, Pixel()))
        # At one offset: the honeypot, then the pixel; a link's value always starts after both.
        order = {Honeypot: 0, Pixel: 1, Link: 2}
        cuts.sort(key=lambda cut: (cut[0], order[type(cut[2])]))
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


@dataclass(frozen=True)
class Rendered:
    """One recipient's email, and whether it carries the honeypot."""

    html: str
    honeypot: bool


class Instrumenter:
    """Renders one HTML email per recipient, with its pixel and signed click URLs.

    `html_text` is the email as text (decode bytes with `errors="surrogateescape"` to keep even
    invalid bytes). `t` (epoch seconds) goes into every URL when given. With
    `email_scoped=True`, `render` takes an ESP merge tag instead of a user id: the click
    signatures cover the email and the link but not the user (the trade-off:
    docs/tracking/instrumenting.md), and the pixel carries no user id, so opens are counted per
    email only. `honeypot` adds the hidden link (signed `hp=1`) to every tracked email;
    `pixel_position` is `bottom` or `top`. `warnings` says what the sender should know: links
    left alone that look like they should be tracked.
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
        honeypot: bool = True,
        pixel_position: str = PIXEL_BOTTOM,
    ) -> None:
        self.template = EmailTemplate(html_text, pixel_position, honeypot)
        self.signer = ClickSigner(base_url, email_id, secret, t, scoped=email_scoped)
        self._pixel_url = functools.partial(make_url, base_url, email_id, secret=secret, t=t)

    @property
    def warnings(self) -> list[str]:
        return self.template.warnings

    def pixel_url(self, user_id: str) -> str:
        return self._pixel_url("" if self.signer.email_scoped else user_id)

    def honeypot_url(self, user_id: str) -> str | None:
        """The hidden link's click URL for `user_id`, or None when this email has none."""
        destination = self.template.honeypot_destination
        return None if destination is None else self.signer.url(destination, user_id, honeypot=True)

    def render(self, user_id: str, tracking: str = TRACK_ALL) -> str:
        """The email for `user_id` (or, email-scoped, for the merge tag given as `user_id`).

        `tracking` is what the recipient agreed to: `all`; `clicks` (no pixel); `none` (the
        email exactly as written: no pixel, no rewritten link, no honeypot).
        """
        return self.rendered(user_id, tracking).html

    def rendered(self, user_id: str, tracking: str = TRACK_ALL) -> Rendered:
        """`render`, saying whether the honeypot went in (only into an email longer than
        `HONEYPOT_MIN_LENGTH` without it)."""
        if tracking == TRACK_NONE:
            return Rendered(self.template.text, honeypot=False)
        if tracking not in TRACKING_VALUES:
            raise ValueError(f"tracking must be one of {', '.join(TRACKING_VALUES)}")
        out: list[str] = []
        honeypot_at: int | None = None
        for piece in self.template.pieces:
            if isinstance(piece, str):
                out.append(piece)
            elif isinstance(piece, Link):
                url = html.escape(self.signer.url(piece.destination, user_id), quote=True)
                out.append(f"{piece.quote}{url}{piece.quote}")
            elif isinstance(piece, Honeypot):
                honeypot_at = len(out)
                out.append("")
            elif tracking == TRACK_ALL:
                out.append(pixel_img(self.pixel_url(user_id)))
        with_honeypot = honeypot_at is not None and sum(map(len, out)) > HONEYPOT_MIN_LENGTH
        if with_honeypot and honeypot_at is not None:
            out[honeypot_at] = honeypot_html(self.honeypot_url(user_id) or "")
        return Rendered("".join(out), with_honeypot)

    def render_all(self, user_ids: Iterator[str]) -> Iterator[str]:
        return (self.render(user_id) for user_id in user_ids)
