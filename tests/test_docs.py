"""The docs a user finds their way in: a README short enough to read in five minutes, relative links that lead
somewhere (in the README, which mkdocs does not build, as in docs/), every page in the site's nav, pictures small
enough to commit, every command's --help ending with the page that explains it, every flag a page's command lines
give a command in its --help, and every series a page names in docs/metrics.md. CI's `mkdocs build --strict`
(.ci/run) checks the built site's links and anchors too; these run without mkdocs."""
import functools
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

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


@functools.lru_cache(maxsize=None)
def help_text(command: Tuple[str, ...]) -> str:
    """What ``command --help`` prints: the console script's name, then a subcommand if any (run once per test
    session: the trainer's imports torch)."""
    name, subcommand = command[0], list(command[1:])
    done = subprocess.run([sys.executable, "-c", RUN_HELP, dict(commands())[name], name] + subcommand + ["--help"],
                          cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout
    return done.stdout


@pytest.mark.parametrize("command", [[name] for name, _ in commands()] + [["edgescope-dataset", "imagefolder"]],
                         ids=" ".join)
def test_help_ends_with_its_docs_page(command: List[str]) -> None:
    name = command[0]
    last = help_text(tuple(command)).rstrip().splitlines()[-1]
    match = re.fullmatch(r"Docs: (docs/[\w.-]+\.md)", last)
    assert match, "%s --help ends with %r, not its docs page" % (name, last)
    assert (REPO / match.group(1)).is_file(), last


def test_every_command_is_checked() -> None:
    assert {name for name, _ in commands()} >= {"edgescope-train", "edgescope-dataset", "edgescope-exporter",
                                                "edgescope-report", "edgescope-experiment", "edgescope-fleet-sim"}


COMMAND = re.compile(r"(?<![\w./-])(edgescope-[a-z-]+|-m ([a-z_]+\.[a-z_]+))(?=\s|$)")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9.-]*[a-z0-9]")
SHELL_END = re.compile(r"&&|\|\||[|;#]")


def command_texts(text: str) -> Iterator[str]:
    """Each command line a page shows: the lines of its code blocks (a trailing backslash joined to the next line)
    and its inline code; prose is not searched (it names flags of several commands in one sentence)."""
    for block in FENCE.findall(text):
        yield from block.replace("\\\n", " ").splitlines()[1:-1]
    yield from (code.strip("`") for code in CODE.findall(FENCE.sub("", text)))


def flags_of_unknown(text: str, flags: Dict[Tuple[str, ...], List[str]]) -> List[str]:
    """``command --flag`` for each flag ``text``'s commands are given that their --help does not list.
    ``flags`` maps (command, subcommand...) to its flags; a command not in it (an external tool) is skipped."""
    scripts = {entry.split(":")[0]: name for name, entry in commands()}
    unknown = []
    for line in command_texts(text):
        for match in COMMAND.finditer(line):
            name = scripts.get(match.group(2), match.group(1)) if match.group(2) else match.group(1)
            rest = SHELL_END.split(line[match.end():], 1)[0]
            words = rest.split()
            key = (name, words[0]) if words and (name, words[0]) in flags else (name,)
            if key not in flags:
                continue
            unknown += [name + " " + flag for flag in FLAG.findall(rest) if flag not in flags[key]]
    return unknown


def test_flags_on_the_pages_exist() -> None:
    """Every flag a page's command lines give one of the project's commands is in that command's --help: a
    renamed or removed flag leaves no copy-pasted line behind."""
    keys = [(name,) for name, _ in commands()] + [("edgescope-dataset", kind) for kind in ("cifar10", "imagefolder")]
    flags = {key: FLAG.findall(help_text(key)) for key in keys}
    found = []
    for page in [REPO / "README.md"] + PAGES:
        found += [page.name + ": " + flag for flag in flags_of_unknown(page.read_text(encoding="utf-8"), flags)]
    assert found == []


def test_an_unknown_flag_is_found() -> None:
    """The check can fail: a flag the command lacks, in a code block (continued over a line) or inline code, by
    console script or module; another command's flags, external tools, and prose are not judged."""
    flags = {("edgescope-train",): ["--epochs", "--data-dir"], ("edgescope-dataset", "cifar10"): ["--out"]}
    text = ("```sh\nedgescope-train --epochs 2 \\\n    --epoch 3 && sudo systemctl enable --now x\n```\n"
            "`python3 -m trainer.cli --data-dir d --bogus` `edgescope-dataset cifar10 --out o --images 3`\n"
            "`edgescope-report --anything` prose: edgescope-train --not-code\n")
    assert flags_of_unknown(text, flags) == ["edgescope-train --epoch", "edgescope-train --bogus",
                                             "edgescope-dataset --images"]


METRIC = re.compile(r"(?<![\w:])edgescope_[a-z0-9_]*[a-z0-9](?![\w:])")  # a pattern's stem, `..._*`, is no name
RULE = re.compile(r"\b[a-z_]+:edgescope_[a-z0-9_]+:[a-z0-9_]+")


def documented_series() -> List[str]:
    """The names in the first column of docs/metrics.md's tables (the contract) and the recording rules'."""
    names = []
    for line in (DOCS / "metrics.md").read_text(encoding="utf-8").splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 2:
            names += re.findall(r"`(edgescope_[a-z0-9_]+)`", cells[1])
    rules = "".join(p.read_text(encoding="utf-8") for p in sorted((REPO / "prometheus" / "rules").glob("*.yml")))
    return names + re.findall(r"record: *(\S+)", rules)


def unknown_series(text: str, known: List[str]) -> List[str]:
    """The series names in ``text`` that are neither in ``known`` nor a histogram's part of one; a name's
    pattern (``edgescope_train_epoch_*``, ``..._{start,end}_...``) is not judged."""
    parts = ("_bucket", "_sum", "_count", "_created")
    found = RULE.findall(text) + METRIC.findall(RULE.sub("", text))
    return [name for name in found
            if name not in known and not any(name.endswith(p) and name[:-len(p)] in known for p in parts)]


def test_series_on_the_pages_are_documented() -> None:
    """Every series a page names is in docs/metrics.md (which tests/stack checks against the code) or a
    recording rule: a renamed metric leaves no page naming the old one."""
    known = documented_series()
    found = []
    for page in [REPO / "README.md"] + PAGES:
        found += [page.name + ": " + name for name in unknown_series(page.read_text(encoding="utf-8"), known)]
    assert found == []


def test_an_unknown_series_is_found() -> None:
    known = ["edgescope_train_batch_seconds", "run:edgescope_train_samples:rate1m", "edgescope_source_up"]
    text = ("`edgescope_train_batch_seconds_bucket` `edgescope_source_up{source}` `edgescope_train_epoch_*` "
            "`edgescope_train_epoch_{start,end}_timestamp_seconds` `run:edgescope_train_samples:rate1m` "
            "`edgescope_train_batch_second` `run:edgescope_train_sample:rate1m` `edgescope_source_upp{source}`")
    assert unknown_series(text, known) == ["run:edgescope_train_sample:rate1m", "edgescope_train_batch_second",
                                           "edgescope_source_upp"]
