"""The fenced code blocks of the docs (README.md and docs/**/*.md), as the runner and the snippet
tests read them: one parser, so what a test runs is what a reader sees.

A block preceded by the line `<!-- not run: REASON -->` (blank lines between allowed) is not run,
and REASON shows in the test report. Fences may be indented (inside a list item or an mkdocs
admonition); the indent is removed from the code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*(?P<reason>.+?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str  # the info string's first word, lower case ("" when untagged)
    code: str
    not_run: str | None  # the reason of a `<!-- not run: ... -->` marker

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    """README.md and every page of the mkdocs site, in a stable order."""
    docs = ROOT / "docs"
    return [ROOT / "README.md", *(sorted(docs.rglob("*.md")) if docs.is_dir() else [])]


def blocks_of(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        lang = (opening["info"].split() or [""])[0].lower().lstrip(".{")
        end = i + 1
        while end < len(lines) and not (
            lines[end].strip().startswith(fence) and lines[end].strip().strip(fence[0]) == ""
        ):
            end += 1
        code = "\n".join(
            line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : end]
        )
        before = i - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        marker = NOT_RUN.match(lines[before]) if before >= 0 else None
        found.append(Block(path, i + 1, lang, code + "\n", marker["reason"] if marker else None))
        i = end + 1
    return found


def all_blocks() -> list[Block]:
    return [block for path in doc_files() for block in blocks_of(path)]


def block_defining(lang: str, name: str) -> Block:
    """The one block in `lang` that defines `name` (a function the docs give readers to copy)."""
    matches = [
        b for b in all_blocks() if b.lang == lang and re.search(rf"\b(def|function)\s+{name}\b", b.code)
    ]
    assert len(matches) == 1, f"expected one {lang} block defining {name}, found {[b.id for b in matches]}"
    return matches[0]
