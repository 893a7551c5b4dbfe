"""What the real kernel shows an exporter without privileges, run under setpriv as another uid.

Since Linux 5.x mincore() reports every page of a file resident to a caller
that neither owns the file, nor may write it, nor has CAP_FOWNER, and
cachestat() refuses it with EPERM. These tests put real files in front of a
real kernel under those credentials and check that the exporter's rule gives
the kernel's answer, and that such a dataset is reported down, never 100 %.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import requests

from exporter.pagecache import BLIND_REASONS, PAGE, Scanner
from tests.exporter.conftest import REPO, child_env, free_port, parse_metrics, stop_process

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                                reason="needs root and setpriv to run a child as another uid")

NOBODY = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def setpriv(caps, uid=NOBODY):
    """setpriv arguments: `uid` with exactly `caps` (the unit's CAP_DAC_READ_SEARCH so it can open files)."""
    spec = "-all" + "".join(",+" + c for c in caps)
    ambient = ",".join("+" + c for c in caps) or "-all"
    return ["setpriv"] + uid + ["--bounding-set=" + spec, "--inh-caps=" + spec, "--ambient-caps=" + ambient]


KERNEL_VIEW = """
import json, os, sys
from exporter.pagecache import Blind, Scanner
out = {}
for path in sys.argv[1:]:
    mincore = Scanner("mincore")
    fd = os.open(path, os.O_RDONLY)
    st = os.fstat(fd)
    shown = mincore.kernel_shows(fd, st)
    raw = mincore._mincore(fd, st.st_size)  # what mincore itself answers, rule or not
    os.close(fd)
    try:
        cachestat = Scanner("cachestat").probe(path)[2]
    except Blind:
        cachestat = "EPERM"
    except OSError:  # no cachestat(2) on this kernel
        cachestat = None
    out[os.path.basename(path)] = [shown, raw, cachestat]
print(json.dumps(out))
"""


def _evicted_file(root, name, mode, uid=0):
    path = os.path.join(root, name)
    with open(path, "wb") as f:
        f.write(os.urandom(25 * PAGE))
    os.chown(path, uid, -1)
    os.chmod(path, mode)
    os.sync()
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    return path


@pytest.mark.parametrize("caps,expect_shown", [
    (["dac_read_search"], {"root644": False, "root600": False, "root666": True, "nobody444": True}),
    (["dac_read_search", "fowner"], {"root644": True, "root600": True, "root666": True, "nobody444": True}),
    (["dac_read_search", "dac_override"], {"root644": True, "root600": True, "root666": True, "nobody444": True}),
])
def test_rule_gives_the_kernels_answer(tmp_path, caps, expect_shown):
    """Evicted files: where the rule says hidden, raw mincore says all 25 pages resident and cachestat EPERM."""
    nobody = int(subprocess.check_output(["id", "-u", "nobody"]))
    paths = [_evicted_file(str(tmp_path), "root644", 0o644), _evicted_file(str(tmp_path), "root600", 0o600),
             _evicted_file(str(tmp_path), "root666", 0o666), _evicted_file(str(tmp_path), "nobody444", 0o444, nobody)]
    out = subprocess.run(setpriv(caps) + [sys.executable, "-c", KERNEL_VIEW] + paths, env=child_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    for name, (shown, raw, cachestat) in got.items():
        assert shown == expect_shown[name], name
        assert raw == (0 if shown else 25), (name, raw)  # the kernel's own answer on an evicted file
        assert cachestat in (None, 0 if shown else "EPERM"), (name, cachestat)


def _scrape_until(url, proc, needle, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            body = requests.get(url, timeout=2).text
            if needle in body:
                return parse_metrics(body)
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError("no {} in {} s".format(needle, timeout))


def _unit_caps():
    """The capabilities the shipped systemd unit gives the exporter, as setpriv names them."""
    with open(os.path.join(REPO, "deploy", "edgescope-exporter.service")) as f:
        line = [ln for ln in f if ln.startswith("AmbientCapabilities=")][0]
    return [c[len("CAP_"):].lower() for c in line.split("=", 1)[1].split()]


def test_shipped_unit_sees_a_dataset_owned_by_the_trainer(tmp_path):
    """uid 0 with the unit's capabilities, on a nobody-owned 0644 dataset: the kernel's true answer, as vmtouch's."""
    nobody = int(subprocess.check_output(["id", "-u", "nobody"]))
    paths = [_evicted_file(str(tmp_path), "f{}".format(i), 0o644, nobody) for i in range(3)]
    with open(paths[0], "rb") as f:
        f.read()  # one file cached again
    out = subprocess.run(setpriv(_unit_caps(), uid=["--reuid=0"]) + [sys.executable, "-c", KERNEL_VIEW] + paths,
                         env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert {k: v[:2] for k, v in got.items()} == {"f0": [True, 25], "f1": [True, 0], "f2": [True, 0]}
    assert [v[2] for v in got.values()] in ([25, 0, 0], [None, None, None])


@pytest.mark.parametrize("method", ["mincore", "cachestat"])
def test_exporter_as_unit_user_reports_a_hidden_dataset_down_and_with_fowner_measures_it(tmp_path, method):
    """The real exporter as nobody with only CAP_DAC_READ_SEARCH on root's 0 %-cached dataset, then with CAP_FOWNER."""
    if method == "cachestat" and Scanner().method != "cachestat":
        pytest.skip("this kernel has no cachestat(2)")
    data = tmp_path / "data"
    data.mkdir()
    for i in range(20):
        _evicted_file(str(data), "f{:02d}.bin".format(i), 0o644)
    for caps, expect_up in ((["dac_read_search"], False), (["dac_read_search", "fowner"], True)):
        port = free_port()
        cmd = setpriv(caps) + [sys.executable, "-m", "exporter.cli", "--web.listen-address", "127.0.0.1:{}".format(port),
                               "--power-source", "none", "--dataset", str(data), "--pagecache-method", method,
                               "--pagecache-interval", "1"]
        proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        try:
            m = _scrape_until("http://127.0.0.1:{}/metrics".format(port), proc,
                              "edgescope_dataset_files" if expect_up else BLIND_REASONS[method])
        finally:
            stop_process(proc)
            proc.stdout.close()
            proc.stderr.close()
        key = '{{dataset="{}"}}'.format(data)
        if expect_up:
            assert m["edgescope_dataset_up" + key] == 1
            assert m["edgescope_dataset_page_cache_ratio" + key] == 0  # what vmtouch, as root, says of evicted files
        else:
            assert m["edgescope_dataset_up" + key] == 0
            reason = BLIND_REASONS[method]
            assert m['edgescope_dataset_down_info{{dataset="{}",reason="{}"}}'.format(data, reason)] == 1
            assert "CAP_FOWNER" in reason and str(data) not in reason
            assert not any(k.startswith("edgescope_dataset_page_cache_ratio") for k in m)  # never a fake 100 %


def test_unreadable_file_is_skipped_and_counted(tmp_path):
    """Root without capabilities (the unit's uid, no CAP_DAC_*) cannot open a 0000 file: counted, the rest measured."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(5):
        _evicted_file(str(data), "f{}.bin".format(i), 0o644)
    _evicted_file(str(data), "locked.bin", 0o000)
    script = ("import json, time\n"
              "from exporter.sources.pagecache import PagecacheSource\n"
              "src = PagecacheSource([{!r}], 60, 'mincore', cpu_budget=0)\n"
              "while not any(s.name == 'edgescope_dataset_files' for s in src.sample()): time.sleep(0.05)\n"
              "print(json.dumps({{s.name: s.value for s in src.sample()}}))\n").format(str(data))
    out = subprocess.run(setpriv([], uid=["--reuid=0"]) + [sys.executable, "-c", script], env=child_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["edgescope_dataset_scan_errors_total"] == 1
    assert got["edgescope_dataset_files"] == 5 and got["edgescope_dataset_up"] == 1
