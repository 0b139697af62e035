"""Every code block of the site's pages runs.

The pages are Markdown (``docs/**/*.md``); their code blocks are read with markdown-it,
the parser under myst-parser, so a block is what the site shows as one. By the fence's
info string:

- ```` ```pycon ````: a doctest (``>>>`` lines and their output). The doctest blocks of
  one page run in order in one fresh interpreter, as one doctest file, with ELLIPSIS.
- ```` ```python ````: a whole program, run in a fresh interpreter with a time limit; it
  must exit with status 0.
- ```` ```python fragment ````: a fragment by design (it names what the page does not
  define, or runs for ever). It is not run, but it must compile.
- any other language (``console``, ``text``...) is not Python and is not run.

A block without a language, or indented instead of fenced, fails: the reader and this
test must be able to tell what it is.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docs.conftest import DOCS, skip_without_docs_extra
from tests.support import run_python

PYTHON = ("python", "py", "python3")
TIME_LIMIT = 120  # seconds, per program or per page of doctests


@dataclass(frozen=True, slots=True)
class Block:
    page: Path
    line: int  # 1-based, of the opening fence
    language: str  # the info string's first word
    flags: tuple[str, ...]  # its other words (``fragment``)
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(DOCS)}:{self.line}"


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)


def blocks(page: Path) -> list[Block]:
    from markdown_it import MarkdownIt

    found = []
    for token in MarkdownIt("commonmark").parse(page.read_text(encoding="utf-8")):
        if token.type not in ("fence", "code_block"):
            continue
        words = token.info.split() if token.type == "fence" else []
        if words and words[0].startswith("{"):  # a MyST directive (toctree, include...)
            if words[0] not in ("{code-block}", "{code}"):
                continue
            words = words[1:]
        line = token.map[0] + 1 if token.map else 0
        found.append(Block(page, line, words[0] if words else "", tuple(words[1:]), token.content))
    return found


def all_blocks() -> list[Block]:
    if importlib.util.find_spec("markdown_it") is None:
        return []
    return [block for page in pages() for block in blocks(page)]


BLOCKS = all_blocks()
PROGRAMS = [b for b in BLOCKS if b.language in PYTHON and "fragment" not in b.flags]
DOCTEST_PAGES = sorted({b.page for b in BLOCKS if b.language == "pycon"})


def test_every_block_says_what_it_is() -> None:
    skip_without_docs_extra()
    unmarked = [b.where for b in BLOCKS if not b.language]
    assert not unmarked, f"code blocks without a language (or indented, not fenced): {unmarked}"
    unknown = [b.where for b in BLOCKS if set(b.flags) - {"fragment"}]
    assert (
        not unknown
    ), f"code blocks with words other than 'fragment' after the language: {unknown}"


def test_fragments_compile() -> None:
    skip_without_docs_extra()
    for block in BLOCKS:
        if block.language in PYTHON and "fragment" in block.flags:
            compile(block.code, block.where, "exec")


@pytest.mark.timeout(TIME_LIMIT + 30)
@pytest.mark.parametrize("block", PROGRAMS, ids=lambda b: b.where)
def test_program_runs(block: Block, tmp_path: Path) -> None:
    program = tmp_path / "program.py"
    program.write_text(block.code, encoding="utf-8")
    run = run_python(program, timeout=TIME_LIMIT, sys_path=True, cwd=tmp_path)
    assert run.returncode == 0, (
        f"{block.where} exited with {run.returncode}; if it is a fragment by design, mark"
        f" its fence 'python fragment'\n{run.stdout}{run.stderr}"
    )


@pytest.mark.timeout(TIME_LIMIT + 30)
@pytest.mark.parametrize("page", DOCTEST_PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_doctests_pass(page: Path, tmp_path: Path) -> None:
    text = "\n".join(b.code for b in BLOCKS if b.page == page and b.language == "pycon")
    doctests = tmp_path / "doctests.txt"
    doctests.write_text(text, encoding="utf-8")
    run = run_python("-m", "doctest", "-o", "ELLIPSIS", doctests, timeout=TIME_LIMIT, sys_path=True)
    assert run.returncode == 0, f"{page.relative_to(DOCS)}:\n{run.stdout}{run.stderr}"


def test_the_pages_have_code_to_check() -> None:
    """The collection above found the blocks (a parser change could silently find none)."""
    skip_without_docs_extra()
    assert PROGRAMS and DOCTEST_PAGES
