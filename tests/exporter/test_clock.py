"""The exporter's wall clock and start time, read at scrape time, under a shifted
clock (Debian's faketime, as on a Jetson without RTC battery or NTP)."""
import shutil
import subprocess
import time

import pytest
import requests

from tests.exporter.conftest import child_env, free_port, parse_metrics, stop_process
from tests.processes import wait_http_ok

SHIFT_S = 600.0


@pytest.mark.skipif(shutil.which("faketime") is None, reason="Debian's faketime is not installed")
def test_time_and_start_time_follow_the_board_clock():
    env = dict(child_env(), FAKETIME_DONT_FAKE_MONOTONIC="1")  # see tests/report/test_report_faults.py
    port = free_port()
    before = time.time()
    proc = subprocess.Popen(["faketime", "-f", "+{:g}s".format(SHIFT_S), "python3", "-m", "exporter.cli",
                             "--power-source", "none", "--web.listen-address", "127.0.0.1:{}".format(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, universal_newlines=True,
                            start_new_session=True)  # faketime forks the exporter: stop both
    try:
        assert wait_http_ok(proc, "http://127.0.0.1:{}/metrics".format(port), 60), proc.stderr
        first = parse_metrics(requests.get("http://127.0.0.1:{}/metrics".format(port), timeout=5).text)
        asked = time.time()
        time.sleep(1.1)
        body = requests.get("http://127.0.0.1:{}/metrics".format(port), timeout=5).text
        answered = time.time()
    finally:
        stop_process(proc)
    second = parse_metrics(body)
    # the board clock is SHIFT_S ahead: the value is the shifted time of each scrape, not of a sample
    assert before + SHIFT_S <= first["edgescope_exporter_start_time_seconds"] <= asked + SHIFT_S
    assert asked + SHIFT_S + 1.0 <= second["edgescope_time_seconds"] <= answered + SHIFT_S
    assert second["edgescope_exporter_start_time_seconds"] == first["edgescope_exporter_start_time_seconds"]
    if shutil.which("promtool"):
        check = subprocess.run(["promtool", "check", "metrics"], input=body, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, universal_newlines=True)
        assert check.returncode == 0 and check.stdout.strip() == "", check.stdout
