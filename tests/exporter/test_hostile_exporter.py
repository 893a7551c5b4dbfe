"""A real exporter process fed hostile tegrastats lines and a non-UTF-8 dataset path keeps answering
every scrape promptly with exposition promtool accepts."""
import os
import shutil
import subprocess
import time

import pytest
import requests

from tests.exporter.conftest import make_orin_sysfs, tegrastats_lines

GOOD = tegrastats_lines()["xavier_nx_jp5"]
HOSTILE = [
    b"CPU [ " * 40000,  # 240 KB: held the parser for 52 s before lines were capped
    GOOD.replace("RAM 3168/", "RAM " + "9" * 400 + "/").encode(),  # a 400-digit value
    GOOD.replace("VDD_IN 2763mW", "VDD_IN -2763mW").encode(),  # a negative input rail
    GOOD.replace(" VDD_IN 2763mW/2846mW", "").encode(),  # the input rail gone
    GOOD.replace("AO@45C", "AO@" + "9" * 400 + "C").encode(),
    b"\xff\xfe\x00 not text at all \x80\x81",
    GOOD.replace("CPU [23%", "CPU [" + "9" * 400 + "%").encode(),
]


def test_hostile_lines_never_block_or_break_a_scrape(tmp_path, run_exporter):
    replay = tmp_path / "hostile.log"
    replay.write_bytes(b"\n".join(x for line in HOSTILE for x in (GOOD.encode(), line)) + b"\n")
    dataset = os.path.join(os.fsencode(str(tmp_path)), b"caf\xe9-data")  # a Latin-1 file name
    os.mkdir(dataset)
    with open(os.path.join(dataset, b"a.bin"), "wb") as f:
        f.write(os.urandom(8192))
    url, proc = run_exporter("--power-source", "tegrastats", "--tegrastats-file", str(replay), "--interval", "0.1",
                             "--sysfs-root", make_orin_sysfs(tmp_path / "sys"), "--dataset", dataset,
                             "--pagecache-interval", "1", wait_for="edgescope_dataset_files")
    bodies = []
    seen = ("negative rail power", "line longer than 4096 characters", "edgescope_board_power_watts 2.763")
    deadline = time.monotonic() + 30
    # at least 25 scrapes (2.5 s at 0.1 s a line: the 14-line file loops once), and on until the replay has shown
    # every kind of line: on a busy machine the replay's 0.1 s lines stretch, and 2.5 s may not hold them all
    while len(bodies) < 25 or (time.monotonic() < deadline and not all(t in "".join(bodies) for t in seen)):
        response = requests.get(url + "/metrics", timeout=2)  # every scrape answers within 2 s
        assert response.status_code == 200
        bodies.append(response.text)
        time.sleep(0.1)
    assert proc.poll() is None
    everything = "\n".join(bodies)
    assert "last tegrastats line rejected: negative rail power" in everything
    assert "last tegrastats line rejected: line longer than 4096 characters" in everything
    assert "edgescope_board_power_watts 2.763" in everything  # the good lines still give power
    assert 'board_rail="VDD_IN"' in everything and 'board_rail="sum"' not in everything
    assert "9" * 50 not in everything
    assert 'dataset="{}"'.format(os.path.join(str(tmp_path), "caf\\\\xe9-data")) in everything
    rejected = [float(line.rsplit(" ", 1)[1]) for line in bodies[-1].splitlines()
                if line.startswith('edgescope_source_rejected_samples_total{source="tegrastats"}')]
    assert rejected and rejected[0] > 0
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed")
    for body in bodies[::4]:
        check = subprocess.run(["promtool", "check", "metrics"], input=body.encode("utf-8"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        assert check.returncode == 0 and check.stdout.strip() == b"", check.stdout
