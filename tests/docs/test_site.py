"""The built site: no warnings, no broken internal link, a reference entry per public name."""

from __future__ import annotations

import importlib
import importlib.util
import re
import zlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.docs.conftest import DOCS, Site

# the modules whose every public name must have an entry of its own in the reference
FACES = [
    "plait.multiprocessing",
    "plait.threading",
    "plait.queue",
    "plait.futures",
    "plait.coro",
    "plait.pool",
]

pytestmark = pytest.mark.timeout(900)  # the first test to ask for the site builds it


def test_the_build_is_warning_free(site: Site) -> None:
    warnings = [line for line in site.output.splitlines() if "WARNING" in line or "ERROR" in line]
    assert site.returncode == 0 and not warnings, site.output


def test_the_build_reads_its_inventories_from_files(site: Site) -> None:
    """intersphinx loads the Python docs' inventory from the file the build wrote, and
    fetches nothing: the build must work where only PyPI is reachable."""
    loads = re.findall(r"loading intersphinx inventory '(\w+)' from (\S+)", site.output)
    assert loads and all(not urlsplit(source).scheme for _, source in loads), site.output


class Page(HTMLParser):
    """The ids a page defines and the internal addresses it points to."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            elif name in ("href", "src") and value and not urlsplit(value).scheme:
                self.links.append(value)


def read_pages(html: Path) -> dict[Path, Page]:
    pages = {}
    for path in sorted(html.rglob("*.html")):
        page = Page()
        page.feed(path.read_text(encoding="utf-8"))
        pages[path] = page
    return pages


def test_every_internal_link_resolves(site: Site) -> None:
    pages = read_pages(site.html)
    assert site.html / "index.html" in pages
    broken = []
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{path.relative_to(site.html)}: {link} (no such file)")
            elif parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in pages[target].ids:
                    broken.append(f"{path.relative_to(site.html)}: {link} (no such anchor)")
    assert not broken, "\n".join(broken)


def inventory(path: Path) -> dict[str, str]:
    """The entries of a Sphinx ``objects.inv`` (version 2): name -> domain:role."""
    data = path.read_bytes()
    header = data.split(b"\n", 4)
    assert header[0] == b"# Sphinx inventory version 2", header[0]
    entries = {}
    for line in zlib.decompress(header[4]).decode().splitlines():
        match = re.match(r"(.+?)\s+(\S+:\S+)\s+-?\d+\s+\S*\s+.*", line)
        if match:
            entries[match[1]] = match[2]
    return entries


def test_every_public_name_of_the_faces_has_a_reference_entry(site: Site) -> None:
    entries = inventory(site.html / "objects.inv")
    missing = []
    for module_name in FACES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            qualified = f"{module_name}.{name}"
            if not entries.get(qualified, "").startswith("py:"):
                missing.append(qualified)
    assert not missing, f"no entry in the API reference for {missing}"


def test_every_module_of_the_reference_has_its_page(site: Site) -> None:
    """docs/_ext/plait_api.py's MODULES (the faces' submodules come from the table the
    faces use) and the pages of docs/api/ name the same modules, and each page is built."""
    spec = importlib.util.spec_from_file_location("plait_api", DOCS / "_ext" / "plait_api.py")
    plait_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plait_api)
    pages = {path.stem for path in (DOCS / "api").glob("*.rst")}
    assert pages == set(plait_api.MODULES)
    for module_name in plait_api.MODULES:
        assert (site.html / "api" / f"{module_name}.html").is_file(), module_name


def test_the_readmes_links_name_files_of_the_tree() -> None:
    """The README links to the site's sources (GitHub shows them); none may be stale."""
    readme = DOCS.parent / "README.md"
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme.read_text(encoding="utf-8"))
    local = [link for link in links if not urlsplit(link).scheme]
    assert local, "the README links to no page of the site"
    missing = [link for link in local if not (readme.parent / link).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_every_example_is_a_recipe_linked_from_a_guide(site: Site) -> None:
    """Each program of examples/ is shown on the Recipes page, and a guide links to it."""
    pages = read_pages(site.html)
    recipes = pages[site.html / "recipes.html"]
    guide_links = {
        link.rsplit("#", 1)[-1]
        for path, page in pages.items()
        if path.parent.name == "guides"
        for link in page.links
        if link.startswith("../recipes.html#")
    }
    for example in sorted((DOCS.parent / "examples").glob("*.py")):
        anchor = "recipe-" + example.stem.replace("_", "-")  # as docutils makes ids
        assert anchor in recipes.ids, f"{example.name} is not on the Recipes page"
        assert anchor in guide_links, f"no guide links to the recipe {example.name}"


def test_the_benchmarks_page_shows_the_recorded_report_as_a_recording(site: Site) -> None:
    page = read_pages(site.html)[site.html / "benchmarks.html"]
    text = (site.html / "benchmarks.html").read_text(encoding="utf-8")
    assert "a recording, not a live measurement" in text
    recorded = DOCS / "benchmarks" / "recorded"
    assert (recorded / "report.md").is_file(), "no recorded report: python -m plait bench --report"
    shown = {Path(link).name for link in page.links}
    charts = {chart.name for chart in (recorded / "charts").glob("*.svg")}
    assert charts and charts <= shown, f"charts not on the page: {sorted(charts - shown)}"
