"""The docs a user finds their way in: a README short enough to read in five minutes, relative links that lead
somewhere (in the README, which mkdocs does not build, as in docs/), every page in the site's nav, pictures small
enough to commit, and every command's --help ending with the page that explains it. CI's `mkdocs build --strict`
(.ci/run) checks the built site's links and anchors too; these run without mkdocs."""
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
README_MAX_LINES = 250
PICTURE_MAX_BYTES = 300 * 1000
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")


def broken_links(page: Path) -> List[str]:
    """The relative links (and image paths) in ``page`` whose file does not exist, anchors aside; code is not
    searched (a Markdown link inside a code block is text)."""
    text = CODE.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))
    broken = []
    for target in LINK.findall(text):
        path = target.split("#", 1)[0]
        if not path or re.match(r"[a-z][a-z0-9+.-]*:", path):  # an anchor on the page, or a URL
            continue
        if not (page.parent / path).exists():
            broken.append(target)
    return broken


def test_readme_reads_in_five_minutes() -> None:
    lines = len((REPO / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, "README.md has %d lines; move detail into docs/" % lines


@pytest.mark.parametrize("page", [REPO / "README.md"] + PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_lead_to_files(page: Path) -> None:
    assert broken_links(page) == []


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    """The check can fail: a missing page and a missing picture are reported, a URL, an anchor and a link
    inside code are not."""
    (tmp_path / "there.md").write_text("x", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("[a](there.md#part) [b](missing.md) ![c](pictures/none.png) [d](https://example.org/x)\n"
                    "[e](#top) `[f](in-code.md)`\n```\n[g](in-block.md)\n```\n", encoding="utf-8")
    assert broken_links(page) == ["missing.md", "pictures/none.png"]


def nav_pages(nav: list) -> List[str]:
    """Every page file named in mkdocs.yml's nav, sections flattened."""
    found = []
    for entry in nav:
        for value in (entry.values() if isinstance(entry, dict) else [entry]):
            found += nav_pages(value) if isinstance(value, list) else [value]
    return found


def test_every_page_is_in_the_nav() -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = nav_pages(config["nav"])
    assert sorted(listed) == sorted(p.name for p in PAGES)


def test_pictures_are_used_and_small() -> None:
    pictures = sorted((DOCS / "pictures").glob("*.png"))
    assert pictures
    texts = "".join(p.read_text(encoding="utf-8") for p in [REPO / "README.md"] + PAGES)
    for picture in pictures:
        assert picture.stat().st_size < PICTURE_MAX_BYTES, picture
        assert "pictures/" + picture.name in texts, "%s is on no page" % picture.name


def commands() -> List[List[str]]:
    """[name, module:function] of every console script in pyproject.toml."""
    table = (REPO / "pyproject.toml").read_text(encoding="utf-8").split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    return [list(pair) for pair in re.findall(r'^([\w-]+) = "([\w.]+:\w+)"$', table, re.M)]


RUN_HELP = """
import importlib, sys
module, function = sys.argv[1].split(":")
sys.argv = [sys.argv[2]] + sys.argv[3:]
sys.exit(getattr(importlib.import_module(module), function)())
"""


@pytest.mark.parametrize("command", commands() + [["edgescope-dataset", "trainer.datasets_cli:main", "imagefolder"]],
                         ids=lambda c: " ".join([c[0]] + c[2:]))
def test_help_ends_with_its_docs_page(command: List[str]) -> None:
    name, entry = command[:2]
    done = subprocess.run([sys.executable, "-c", RUN_HELP, entry, name] + command[2:] + ["--help"], cwd=str(REPO),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert done.returncode == 0, done.stdout
    last = done.stdout.rstrip().splitlines()[-1]
    match = re.fullmatch(r"Docs: (docs/[\w.-]+\.md)", last)
    assert match, "%s --help ends with %r, not its docs page" % (name, last)
    assert (REPO / match.group(1)).is_file(), last


def test_every_command_is_checked() -> None:
    assert {name for name, _ in commands()} >= {"edgescope-train", "edgescope-dataset", "edgescope-exporter",
                                                "edgescope-report", "edgescope-experiment", "edgescope-fleet-sim"}
