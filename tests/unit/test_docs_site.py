"""The documentation site (mkdocs.yml, docs/): it builds with `mkdocs build --strict`, which
fails on a broken link or anchor; the built pages load nothing from another host; the README
stays short and leads to the pages a newcomer needs; the alarms name runbook entries that exist.

`make test` runs the strict build through this file (no separate Makefile line)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import ROOT

MKDOCS = Path(sys.executable).parent / "mkdocs"
# What the build reads: the config, the pages, the hook and the files the hook renders.
SOURCES = ["mkdocs.yml", "docs", "docs_hooks", "openapi.yaml", "BENCHMARKS.md"]


def build(source: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(site)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def copy_sources(target: Path) -> Path:
    target.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, target / name)
    return target


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    result = build(ROOT, out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


# <link rel=...> kinds a browser does not fetch by itself.
NOT_LOADED = {"canonical", "alternate", "author", "help", "license", "next", "prev"}


class AssetLoads(HTMLParser):
    """Every URL a browser loads by itself when it shows the page (not the links a reader may
    follow): scripts, stylesheets, icons, images, frames, media, and CSS `url()`/`@import`."""

    LOADING = {
        ("script", "src"),
        ("link", "href"),
        ("img", "src"),
        ("img", "srcset"),
        ("source", "src"),
        ("source", "srcset"),
        ("iframe", "src"),
        ("video", "src"),
        ("video", "poster"),
        ("audio", "src"),
        ("embed", "src"),
        ("object", "data"),
        ("input", "src"),
    }

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        for name, value in attrs:
            if value is None:
                continue
            if (tag, name) in self.LOADING:
                if tag == "link" and name == "href" and not self._loads(attrs):
                    continue
                candidates = value.split(",") if name == "srcset" else [value]
                self.urls += [part.strip().split(" ")[0] for part in candidates]
            if name == "style":
                self.urls += css_urls(value)

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.urls += css_urls(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    @staticmethod
    def _loads(attrs: list[tuple[str, str | None]]) -> bool:
        """A <link> the browser fetches: a stylesheet, icon, preload, manifest..., not `canonical`."""
        rel = (dict(attrs).get("rel") or "").lower().split()
        return not rel or not set(rel) <= NOT_LOADED


def css_urls(css: str) -> list[str]:
    found = re.findall(r"url\(\s*['\"]?([^'\")]+)", css)
    found += re.findall(r"@import\s+(?:url\()?\s*['\"]?([^'\")\s;]+)", css)
    return found


def external(url: str) -> bool:
    """Another host: an absolute http(s) URL or a scheme-relative one (`//host/...`)."""
    parts = urlsplit(url.strip())
    return parts.scheme in ("http", "https") or (not parts.scheme and url.strip().startswith("//"))


def test_strict_build_passes_and_renders_every_page(site):
    for page in ["index", "operate/runbook", "stats/api-reference", "architecture", "BENCHMARKS"]:
        assert (site / page / "index.html").exists() or (site / f"{page}.html").exists(), page
    assert (site / "openapi.yaml").read_bytes() == (ROOT / "openapi.yaml").read_bytes()


def test_built_site_loads_nothing_from_another_host(site):
    offenders = []
    for path in site.rglob("*"):
        if path.suffix == ".html":
            parser = AssetLoads()
            parser.feed(path.read_text(encoding="utf-8"))
            urls = parser.urls
        elif path.suffix == ".css":
            urls = css_urls(path.read_text(encoding="utf-8"))
        else:
            continue
        offenders += [f"{path.relative_to(site)}: {url}" for url in urls if external(url)]
    assert offenders == []
    # Material fetches web fonts from Google unless the theme's font is off, and mermaid from a
    # CDN when a page has a diagram: neither may appear.
    text = "\n".join(p.read_text(encoding="utf-8") for p in site.rglob("*.html"))
    assert "fonts.googleapis.com" not in text and "fonts.gstatic.com" not in text
    assert 'class="mermaid"' not in text


def test_the_offline_check_would_see_an_external_load():
    parser = AssetLoads()
    parser.feed(
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">'
        '<link rel="canonical" href="https://example.com/">'
        '<script src="//cdn.example.com/x.js"></script><img src="../dashboard.png">'
        "<style>@import 'https://cdn.example.com/a.css'; b { background: url(/local.png) }</style>"
    )
    assert [url for url in parser.urls if external(url)] == [
        "https://fonts.googleapis.com/css?family=Roboto",
        "//cdn.example.com/x.js",
        "https://cdn.example.com/a.css",
    ]


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("[entry](operate/runbook.md#alarm-that-does-not-exist)", "does not contain an anchor"),
        ("[page](operate/no-such-page.md)", "not found among documentation files"),
        ("[entry](#no-such-heading)", "no such anchor on this page"),
    ],
)
def test_strict_build_fails_on_a_broken_link_or_anchor(tmp_path, broken, message):
    source = copy_sources(tmp_path / "src")
    index = source / "docs" / "index.md"
    index.write_text(index.read_text(encoding="utf-8") + f"\n{broken}\n", encoding="utf-8")
    result = build(source, tmp_path / "site")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_every_alarm_names_a_runbook_entry_the_built_page_has(site):
    """serverless.yml's alarm descriptions say `Runbook: docs/operate/runbook.md#alarm-...`:
    each such anchor is an id on the built runbook page."""
    template = (ROOT / "serverless.yml").read_text(encoding="utf-8")
    anchors = set(re.findall(r"docs/operate/runbook\.md#([\w-]+)", template))
    assert len(anchors) >= 10
    page = (site / "operate" / "runbook" / "index.html").read_text(encoding="utf-8")
    ids = set(re.findall(r'id="([^"]+)"', page))
    assert anchors <= ids, anchors - ids
    assert "README#" not in template


def test_api_reference_lists_every_operation(site):
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    page = (site / "stats" / "api-reference" / "index.html").read_text(encoding="utf-8")
    for path, item in spec["paths"].items():
        for method in item:
            if method in ("get", "head", "post", "put", "patch", "delete"):
                assert f"{method.upper()} {path}" in page, (method, path)
    for name in spec["components"]["schemas"]:
        assert f'id="schema-{name.lower()}"' in page, name


README = (ROOT / "README.md").read_text(encoding="utf-8")


def readme_links() -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", README)


def test_readme_is_short_and_leads_with_the_two_commands():
    assert len(README.splitlines()) <= 250
    first_block = re.search(r"```\w*\n(.*?)```", README, re.DOTALL)
    assert first_block, "no code block in README.md"
    assert first_block.group(1).splitlines()[0].startswith("make run")
    assert first_block.group(1).splitlines()[1].startswith("make test")
    assert "docs/dashboard.png" in readme_links()


def test_readme_leads_in_one_click_to_deploy_embed_stats_and_the_runbook():
    links = {link.split("#")[0] for link in readme_links()}
    for page in [
        "docs/operate/deploy.md",
        "docs/getting-started.md",  # embed the pixel, query the opens
        "docs/tracking/signing.md",
        "docs/stats/index.md",
        "docs/operate/runbook.md",
    ]:
        assert page in links, page


def test_readme_links_resolve(site):
    """Every relative link of README.md names a file that exists and, for a docs page, an
    anchor the built page has."""
    for link in readme_links():
        if external(link):
            continue
        path, _, anchor = link.partition("#")
        assert (ROOT / path).exists(), link
        if anchor:
            assert path.startswith("docs/") and path.endswith(".md"), link
            page = path.removeprefix("docs/").removesuffix(".md")
            built = site / ("" if page == "index" else page.removesuffix("/index")) / "index.html"
            assert f'id="{anchor}"' in built.read_text(encoding="utf-8"), link
