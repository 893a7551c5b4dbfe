"""The exporter as a process: real /metrics through promtool, the contract, and one-line config errors."""
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest
import requests

from exporter.metrics import METRICS
from tests.exporter.conftest import REPO, child_env, make_orin_sysfs, parse_metrics

DEMO = os.path.join(REPO, "exporter", "demo", "tegrastats_nano_warming.log")


def test_full_metrics_pass_promtool(tmp_path, run_exporter):
    sysfs = make_orin_sysfs(tmp_path / "sys")
    dataset = tmp_path / "data"
    dataset.mkdir()
    (dataset / "a.bin").write_bytes(os.urandom(10000))
    url, _ = run_exporter("--power-source", "tegrastats", "--tegrastats-file", DEMO, "--interval", "0.2",
                          "--sysfs-root", sysfs, "--dataset", str(dataset), wait_for="edgescope_dataset_files")
    body = requests.get(url + "/metrics", timeout=5).text
    m = parse_metrics(body)
    for src in ("tegrastats", "diskstats", "thermal", "pagecache"):
        assert m['edgescope_source_up{source="%s"}' % src] == 1
    # the demo log is a replay, and says so
    assert m['edgescope_power_source_info{board_rail="POM_5V_IN",fallback_from="",replay="true",source="tegrastats"}'] == 1
    assert m["edgescope_board_energy_uncovered_seconds_total"] >= 0
    assert m["edgescope_board_power_watts"] > 0
    assert m['edgescope_throttle_events_total{sensor="oc3"}'] == 37
    names = {re.match(r"[a-z_]+", k).group(0) for k in m}
    names = {n[:-len("_created")] if n.endswith("_created") else n for n in names}
    assert names <= set(METRICS), names - set(METRICS)
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed")
    check = subprocess.run(["promtool", "check", "metrics"], input=body, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True)
    assert check.returncode == 0, check.stdout
    assert check.stdout.strip() == "", check.stdout  # no lint warnings either


def test_no_power_source_means_no_power_series(tmp_path, run_exporter):
    url, _ = run_exporter("--power-source", "auto", "--sysfs-root", str(tmp_path), "--jtop-socket", str(tmp_path / "no.sock"),
                          wait_for=('source="thermal"', 'source="rapl"} 1', 'source="jtop"} 1'))
    body = requests.get(url + "/metrics", timeout=5).text
    if shutil.which("tegrastats"):
        pytest.skip("this machine has tegrastats")
    assert "edgescope_board_power_watts" not in body and "edgescope_board_energy_joules_total" not in body
    assert 'edgescope_source_up{source="rapl"} 0.0' in body and 'edgescope_source_up{source="jtop"} 0.0' in body
    assert re.search(r'edgescope_source_down_info\{reason="no RAPL zones[^"]*",source="rapl"\} 1', body)
    assert re.search(r'edgescope_source_down_info\{reason="[^"]+",source="jtop"\} 1', body)


def _run(args, tmp_path):
    return subprocess.run([sys.executable, "-m", "exporter.cli"] + args, env=child_env(), cwd=str(tmp_path),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=30)


@pytest.mark.parametrize("config,needle", [
    ("interval: fast\n", "cfg.yml: key 'interval': must be a positive number of seconds, got 'fast'"),
    ("intervall: 1\n", "cfg.yml: unknown key 'intervall'"),
    ("power-source: battery\n", "cfg.yml: key 'power-source': must be one of auto, jtop, tegrastats, nvml, rapl, none"),
    ("dataset: [/no/such/dataset]\n", "cfg.yml: key 'dataset': dataset path '/no/such/dataset' does not exist"),
    ("web.listen-address: 9945\n", "cfg.yml: key 'web.listen-address': must be HOST:PORT or :PORT"),
    ("interval: [1\n", "cfg.yml: not valid YAML at line"),
])
def test_bad_config_is_one_line(tmp_path, config, needle):
    (tmp_path / "cfg.yml").write_text(config)
    r = _run(["--config", "cfg.yml"], tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("args,needle", [
    (["--interval", "0"], "--interval: must be a positive number of seconds, got '0'"),
    (["--tegrastats-file", "/no/such.log"], "--tegrastats-file: file '/no/such.log' does not exist"),
    (["--sysfs-root", "/no/sys"], "--sysfs-root: directory '/no/sys' does not exist"),
    (["--disk-exclude", "(("], "--disk-exclude: is not a valid regular expression"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--config", "/no/cfg.yml"], "--config /no/cfg.yml: No such file or directory"),
    (["--web.config.file", "web.yml"], "web.yml: unknown key 'tls'"),
])
def test_bad_flag_is_one_line(tmp_path, args, needle):
    (tmp_path / "web.yml").write_text("tls:\n  cert: x\n")
    r = _run(args, tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr


def test_busy_port_is_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = _run(["--web.listen-address", "127.0.0.1:{}".format(port), "--power-source", "none"], tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "cannot listen (Address already in use)" in r.stderr, r.stderr


def test_config_file_and_flags_share_names(tmp_path, run_exporter):
    (tmp_path / "cfg.yml").write_text("power-source: none\ninterval: 0.2\nsysfs-root: {}\n".format(tmp_path))
    url, _ = run_exporter("--config", str(tmp_path / "cfg.yml"), "--power-source", "tegrastats",
                          "--tegrastats-file", DEMO, wait_for='source="tegrastats"')
    assert 'edgescope_source_up{source="tegrastats"} 1.0' in requests.get(url + "/metrics", timeout=5).text


def test_contract_matches_docs():
    """Every exporter metric in docs/metrics.md is in METRICS with the same labels, and vice versa."""
    with open(os.path.join(REPO, "docs", "metrics.md")) as f:
        doc = f.read().split("\n## Exporter", 1)[1].split("\n## ", 1)[0]  # its section: up to the next one
    documented = {}
    for row in re.findall(r"^\| (`edgescope_[^|]+)\| (\w[^|]*)\| ([^|]*)\|", doc, re.M):
        labels = tuple(sorted(x.strip() for x in row[2].split(",") if x.strip()))
        for name in re.findall(r"`(edgescope_\w+)`", row[0]):
            documented[name] = labels
    assert set(documented) == set(METRICS)
    for name, labels in documented.items():
        assert labels == tuple(sorted(METRICS[name].labels)), name


def _power_cfg(tmp_path, **over):
    from exporter.config import load
    cfg = load(["--sysfs-root", str(tmp_path)])
    cfg.update(over)
    return cfg


def test_auto_falls_back_to_tegrastats_when_jtop_versions_disagree(tmp_path, monkeypatch, caplog):
    """jtop's socket exists but its client refuses the service ("Mismatch version"): auto uses tegrastats and says so."""
    import types

    from exporter.cli import power_sources

    class JtopException(Exception):
        pass

    class MismatchedJtop:
        def __init__(self, interval=1.0):
            pass

        def start(self):  # the message jetson-stats 4.x start() raises (jtop/jtop.py)
            raise JtopException("Mismatch version jtop service: [4.2.7] and client: [4.3.1]. Please run:\n\n"
                                "sudo systemctl restart jtop.service")

        def close(self):
            pass
    monkeypatch.setitem(sys.modules, "jtop", types.SimpleNamespace(jtop=MismatchedJtop))
    (tmp_path / "jtop.sock").write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "tegrastats"
    fake.write_text("#!/bin/sh\nwhile :; do echo 'RAM 1/2MB VDD_IN 5000mW/5000mW'; sleep 0.05; done\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", "{}:{}".format(bin_dir, os.environ["PATH"]))
    sources = power_sources(_power_cfg(tmp_path, **{"jtop-socket": str(tmp_path / "jtop.sock"), "interval": 0.05}))
    try:
        assert [s.name for s in sources] == ["jtop", "tegrastats"]
        with pytest.raises(Exception, match=r"^Mismatch version .*\(falling back to tegrastats\)$"):
            sources[0].sample()
        deadline = time.monotonic() + 10
        while True:
            try:
                got = sources[1].sample()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        info = [s.labels for s in got if s.name == "edgescope_power_source_info"]
        assert info == [{"source": "tegrastats", "board_rail": "VDD_IN", "replay": "false", "fallback_from": "jtop"}]
        assert "falling back to tegrastats" in caplog.text
    finally:
        for s in sources:
            s.close()


def test_auto_keeps_jtop_when_its_service_is_only_down(tmp_path, monkeypatch):
    """A service that is not running comes back by itself: jtop stays the source and reconnects."""
    import types

    from exporter.cli import power_sources

    class DownJtop:
        def __init__(self, interval=1.0):
            pass

        def start(self):
            raise RuntimeError("The jtop.service is not active. Please run:\nsudo systemctl restart jtop.service")
    monkeypatch.setitem(sys.modules, "jtop", types.SimpleNamespace(jtop=DownJtop))
    (tmp_path / "jtop.sock").write_text("")
    sources = power_sources(_power_cfg(tmp_path, **{"jtop-socket": str(tmp_path / "jtop.sock")}))
    assert [type(s).__name__ for s in sources] == ["JtopSource"]


def test_exporter_restarts_a_tegrastats_that_exits(tmp_path, monkeypatch, run_exporter):
    """The real exporter with a `tegrastats` on PATH that prints three lines and exits: /metrics shows
    the source down with the child's reason, then up again, and the restart's silence as uncovered time."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "tegrastats"
    fake.write_text("#!/bin/sh\nfor i in 1 2 3; do echo 'RAM 1/2MB VDD_IN 5000mW/5000mW'; sleep 0.2; done\n"
                    "echo 'tegrastats: lost the PMIC' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", "{}:{}".format(bin_dir, os.environ["PATH"]))
    url, _ = run_exporter("--power-source", "tegrastats", "--interval", "0.2", "--sysfs-root", str(tmp_path),
                          wait_for='edgescope_source_up{source="tegrastats"} 1.0')
    down = 'edgescope_source_down_info{reason="tegrastats exited with code 1: tegrastats: lost the PMIC",source="tegrastats"} 1.0'
    seen_down, m = False, {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = requests.get(url + "/metrics", timeout=5).text
        seen_down = seen_down or down in body
        m = parse_metrics(body)
        if seen_down and m.get('edgescope_source_up{source="tegrastats"}') == 1 \
                and m.get("edgescope_board_energy_uncovered_seconds_total", 0) > 0:
            break
        time.sleep(0.05)
    assert seen_down, "the exit was never reported"
    assert m['edgescope_source_up{source="tegrastats"}'] == 1, "the child was not started again"
    assert m["edgescope_board_energy_uncovered_seconds_total"] >= 1.0  # at least the 1 s backoff
    assert m["edgescope_board_energy_joules_total"] > 0


@pytest.mark.parametrize("value,needle", [
    ("inf", "--interval: must be a positive number of seconds, got 'inf'"),
    ("nan", "--interval: must be a positive number of seconds, got 'nan'"),
    ("-1", "--interval: must be a positive number of seconds, got '-1'"),
    ("1e300", "--interval: must be between 0.01 and 3600 seconds, got '1e300'"),
])
def test_interval_out_of_range_is_one_line(tmp_path, value, needle):
    r = _run(["--interval", value], tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    "{}: &{} [{}]\n".format(k, k, ", ".join(["*" + p] * 10)) for p, k in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize("content,needle", [
    (b"interval: 1\n# caf\xe9\n", "cfg.yml: not UTF-8 text (byte 0xe9 at line 2); save the settings as UTF-8"),
    (b"- interval\n- 1\n", "cfg.yml: the top level must be a mapping of settings keys to values, not a list"),
    (BOMB.encode(), "cfg.yml: more than 100000 values once its aliases are expanded"),
    (b"interval: " + b"[" * 5000 + b"]" * 5000 + b"\n", "cfg.yml: nested too deeply"),
    (b"interval: 1\n" + b"#" * (1024 * 1024) + b"\n", "cfg.yml: larger than 1 MiB"),
    (b"interval: .inf\n", "cfg.yml: key 'interval': must be a positive number of seconds, got inf"),
    (b"interval: \"1\ninterval: 2\n", "cfg.yml: not valid YAML at line"),
], ids=["latin1", "list", "alias-bomb", "deep", "huge", "inf", "syntax"])
def test_hostile_config_file_is_one_line(tmp_path, content, needle):
    (tmp_path / "cfg.yml").write_bytes(content)
    r = _run(["--config", "cfg.yml"], tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_control_characters_in_arguments_stay_on_one_line(tmp_path):
    r = _run(["--config", "a\nb.yml"], tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "a\\nb.yml" in r.stderr, r.stderr
