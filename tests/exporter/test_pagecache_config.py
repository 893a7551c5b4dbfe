"""The page-cache settings: flag and YAML key, one-line errors, and that they reach the source."""
import subprocess
import sys

import pytest

from exporter.cli import build_sources
from exporter.config import load
from exporter.pagecache import Scanner
from exporter.sources.pagecache import PagecacheSource
from tests.exporter.conftest import child_env


@pytest.mark.parametrize("args,needle", [
    (["--pagecache-method", "fincore"], "--pagecache-method: must be one of auto, cachestat, mincore, got 'fincore'"),
    (["--pagecache-max-error", "1"], "--pagecache-max-error: must be a ratio >= 0 and < 1 (0 = measure every file), got '1'"),
    (["--pagecache-max-error", "3%"], "--pagecache-max-error: must be a finite number >= 0, got '3%'"),
    (["--pagecache-cpu-budget", "-0.01"], "--pagecache-cpu-budget: must be a finite number >= 0, got '-0.01'"),
])
def test_bad_flag_is_one_line(tmp_path, args, needle):
    r = subprocess.run([sys.executable, "-m", "exporter.cli"] + args, env=child_env(), cwd=str(tmp_path),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_bad_yaml_key_is_one_line(tmp_path):
    (tmp_path / "cfg.yml").write_text("pagecache-method: vmtouch\n")
    r = subprocess.run([sys.executable, "-m", "exporter.cli", "--config", "cfg.yml"], env=child_env(), cwd=str(tmp_path),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "cfg.yml: key 'pagecache-method': must be one of auto, cachestat, mincore, got 'vmtouch'" in r.stderr


def _pagecache(cfg):
    sources = build_sources(cfg)
    try:
        return [s for s in sources if isinstance(s, PagecacheSource)][0]
    finally:
        for s in sources:
            s.close()


@pytest.mark.parametrize("method", ["mincore", "cachestat"])
def test_method_from_yaml_and_flag_reaches_the_scanner(tmp_path, method):
    if Scanner().method != "cachestat":
        pytest.skip("this kernel has no cachestat(2)")
    (tmp_path / "cfg.yml").write_text("pagecache-method: {}\npagecache-max-error: 0\npagecache-cpu-budget: 0.5\n".format(method))
    base = ["--power-source", "none", "--dataset", str(tmp_path), "--sysfs-root", str(tmp_path)]
    cfg = load(["--config", str(tmp_path / "cfg.yml")] + base)
    assert (cfg["pagecache-method"], cfg["pagecache-max-error"], cfg["pagecache-cpu-budget"]) == (method, 0, 0.5)
    assert _pagecache(cfg).scanner.method == method
    other = "cachestat" if method == "mincore" else "mincore"
    assert _pagecache(load(["--config", str(tmp_path / "cfg.yml"), "--pagecache-method", other] + base)).scanner.method == other


def test_defaults_are_bounded():
    cfg = load([])
    assert (cfg["pagecache-method"], cfg["pagecache-max-error"], cfg["pagecache-cpu-budget"]) == ("auto", 0.03, 0.01)
