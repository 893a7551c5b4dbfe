"""The set-up scripts: they parse, pass shellcheck, and the project's .venv
that scripts/install-deps.sh made holds what the script says it installs.

A real first run of install-deps.sh (minutes, 5.5 GB) is too slow for the
suite; CI runs it for real (.ci/run) before these tests, and these check its
result: every requirement of the extras it names and its torch pins are
installed in .venv, edgescope is installed editable from this checkout, and a
second run takes the fast path.
"""
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import List

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
INSTALL_DEPS = REPO / "scripts" / "install-deps.sh"
SCRIPTS = [INSTALL_DEPS, REPO / "scripts" / "quickstart.sh", REPO / "scripts" / "make-pictures.sh", REPO / ".ci" / "run"]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"

# Run by the venv's python: prints each requirement (argv[2:], plus edgescope's own for the extras in argv[1])
# that is not installed in a version it accepts; "" when all are.
UNMET = """
import sys, importlib.metadata as md
from packaging.requirements import Requirement
extras = sys.argv[1].split(",")
lines = sys.argv[2:] + (md.requires("edgescope") or [])
for req in map(Requirement, lines):
    if req.marker and not any(req.marker.evaluate({"extra": e}) for e in extras):
        continue
    try:
        version = md.version(req.name)
    except md.PackageNotFoundError:
        print(req, "missing")
        continue
    if not req.specifier.contains(version, prereleases=True):
        print(req, "has", version)
"""


def script_value(name: str) -> str:
    """The value of ``NAME=...`` (one line) in install-deps.sh."""
    match = re.search(r"^%s=(.*)$" % name, INSTALL_DEPS.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, "%s= not found in %s" % (name, INSTALL_DEPS)
    return match.group(1)


def installed_extras() -> str:
    """The extras install-deps.sh installs, e.g. "train,exporter,report,dev"."""
    match = re.fullmatch(r'"\.\[([a-z,]+)\]"', script_value("EXTRAS"))
    assert match, "EXTRAS in %s is not \".[a,b]\"" % INSTALL_DEPS
    return match.group(1)


def torch_pins() -> List[str]:
    """install-deps.sh's TORCH_PINS, e.g. ["torch==2.14.1", "torchvision==0.29.1"]."""
    pins = script_value("TORCH_PINS").strip("()").split()
    assert pins and all("==" in pin for pin in pins), pins
    return pins


def unmet(requirements: List[str]) -> List[str]:
    """Which of ``requirements`` and edgescope's (for the script's extras) .venv does not satisfy."""
    done = subprocess.run([str(VENV_PYTHON), "-c", UNMET, installed_extras() + ","] + requirements,
                          cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120)
    assert done.returncode == 0, done.stdout
    return done.stdout.splitlines()


needs_venv = pytest.mark.skipif(not VENV_PYTHON.exists(),
                                reason="no .venv in this checkout: run scripts/install-deps.sh (CI does)")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_script_parses(script: Path) -> None:
    done = subprocess.run(["bash", "-n", str(script)], stderr=subprocess.PIPE, universal_newlines=True)
    assert done.returncode == 0, done.stderr


def shellcheck(paths: List[Path]) -> subprocess.CompletedProcess:
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck is needed (Debian package shellcheck; scripts/install-deps.sh installs it)")
    return subprocess.run(["shellcheck", "--severity=warning"] + [str(p) for p in paths],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)


def test_scripts_pass_shellcheck() -> None:
    done = shellcheck(SCRIPTS)
    assert done.returncode == 0, done.stdout


def test_shellcheck_finds_a_warning(tmp_path: Path) -> None:
    """An unused variable (SC2034, a warning) fails the check: it is not vacuous."""
    script = tmp_path / "bad.sh"
    script.write_text("#!/usr/bin/env bash\nunused=1\n", encoding="utf-8")
    done = shellcheck([script])
    assert done.returncode != 0 and "SC2034" in done.stdout


@needs_venv
def test_venv_holds_the_extras_and_the_torch_pins() -> None:
    assert unmet(torch_pins()) == []


@needs_venv
def test_unmet_names_missing_and_wrong_versions() -> None:
    """The check above can fail: an absent package and a version outside the range are both reported."""
    missing, too_new = unmet(["edgescope-no-such-package>=1", "pytest<1"])
    assert missing == "edgescope-no-such-package>=1 missing"
    assert too_new.startswith("pytest<1 has ")


@needs_venv
def test_venv_imports_this_checkout() -> None:
    """edgescope is installed editable: outside the checkout, without PYTHONPATH, the venv imports its code."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(VENV_PYTHON), "-c", "import trainer, exporter, report, experiment, fleet; "
                           "print(trainer.__file__)"], cwd="/", env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert done.returncode == 0, done.stdout
    assert Path(done.stdout.strip()).parent == REPO / "trainer"


@needs_venv
def test_second_run_is_the_fast_path() -> None:
    """Once .venv is complete for this pyproject.toml, install-deps.sh only checks (no pip, no apt)."""
    stamp = REPO / ".venv" / "edgescope-installed"
    pyproject_hash = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text(encoding="utf-8").split()[0] != pyproject_hash:
        pytest.skip(".venv is not complete for this pyproject.toml: run scripts/install-deps.sh")
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    done = subprocess.run(["bash", str(INSTALL_DEPS)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300)
    assert done.returncode == 0, done.stdout
    assert "is up to date" in done.stdout and "pip install" not in done.stdout, done.stdout


def test_the_quick_start_trains_two_configurations_and_says_where_each_file_is() -> None:
    """Its run takes minutes (CI has no room for it; its report's pieces are tests/report/test_report_terminal.py
    and the end-to-end run's tests/stack/test_integration.py): two configurations of the same training, at least
    3 epochs each (2 kept: every figure and prediction has a spread), the report with its Pareto front, the html
    page and the loader timeline with its trace, and each file named under "Where to look"."""
    script = (REPO / "scripts" / "quickstart.sh").read_text(encoding="utf-8")
    configurations = re.search(r"^for workers in (\d+) (\d+); do$", script, re.MULTILINE)
    assert configurations and configurations.group(1) != configurations.group(2)
    assert int(re.search(r"--workers \"\$workers\" --epochs (\d+)", script).group(1)) >= 3
    assert '--pareto' in script and '--timeline-dir "$OUT/timelines"' in script
    written = {'--format html --output "$OUT/report.html"': "$OUT/report.html",
               '--timeline "$RUN_ID-w1" --timeline-dir "$OUT/timelines" --output "$OUT/timeline-w1.png"':
                   "$OUT/timeline-w1.png"}
    where = script[script.index('echo "Where to look:"'):]
    for command, path in written.items():
        assert command in script and path in where
    assert "$OUT/timeline-w1.trace.json" in where  # edgescope-report --timeline writes it beside the PNG


def test_the_quick_start_prometheus_scrapes_only_what_it_runs(tmp_path: Path) -> None:
    """The quick start runs the project's prometheus.yml natively, with no node_exporter for the power-mode
    textfile (the compose stack has one): its own lines that write the config keep every job but that one, which
    would be a target down for good on the Targets page it points the user to."""
    script = (REPO / "scripts" / "quickstart.sh").read_text(encoding="utf-8")
    lines = re.search(r"^sed -e .*?>\"\$OUT/prometheus/prometheus\.yml\"$", script, re.MULTILINE | re.DOTALL)
    assert lines, "the quick start no longer writes its prometheus.yml with sed"
    (tmp_path / "prometheus").mkdir()
    subprocess.run(["bash", "-euo", "pipefail", "-c", lines.group(0)], cwd=str(REPO),
                   env=dict(os.environ, OUT=str(tmp_path)), check=True, timeout=60)
    written = yaml.safe_load((tmp_path / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    project = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    assert written["scrape_configs"] == [job for job in project["scrape_configs"]
                                         if job["job_name"] != "edgescope-powermode"]
    assert written["global"]["scrape_interval"] == "2s" and written["rule_files"] == project["rule_files"]
