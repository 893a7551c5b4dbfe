"""Shared helpers for the exporter tests: real fixture lines, fake sysfs trees, a running exporter."""
import os
import subprocess
import sys
import time
from typing import Dict

import pytest
import requests

from tests.processes import child_env, free_port, stop_process  # noqa: F401  (re-exported to the exporter's tests)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tegrastats_lines() -> Dict[str, str]:
    """The real fixture lines keyed by case name ('## key  description' precedes each line)."""
    lines, key = {}, None
    with open(os.path.join(FIXTURES, "tegrastats_lines.txt")) as f:
        for raw in f:
            raw = raw.rstrip("\n")
            if raw.startswith("## ") and not raw.startswith("##  "):
                key = raw[3:].split()[0]
            elif raw and not raw.startswith("#"):
                lines[key] = raw
    return lines


def write(root, rel: str, text: str) -> str:
    path = os.path.join(str(root), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text + "\n")
    return path


def make_orin_sysfs(root) -> str:
    """A fake /sys with the layout of a Jetson Orin (JetPack 6): zones, cooling devices, cpufreq, GPU devfreq, soctherm_oc."""
    root = str(root)
    zones = [("cpu-thermal", "48562"), ("gpu-thermal", "49625"), ("cv0-thermal", None), ("soc0-thermal", "-256000"),
             ("tj-thermal", "49312")]
    for i, (kind, temp) in enumerate(zones):
        write(root, "class/thermal/thermal_zone{}/type".format(i), kind)
        if temp is not None:
            write(root, "class/thermal/thermal_zone{}/temp".format(i), temp)
    # trip points of cpu-thermal as on Orin: a software throttle point and the shutdown point
    write(root, "class/thermal/thermal_zone0/trip_point_0_temp", "99000")
    write(root, "class/thermal/thermal_zone0/trip_point_0_type", "passive")
    write(root, "class/thermal/thermal_zone0/trip_point_1_temp", "104500")
    write(root, "class/thermal/thermal_zone0/trip_point_1_type", "critical")
    for cpu, cur in ((0, "1497600"), (1, "729600")):
        d = "devices/system/cpu/cpu{}/cpufreq/".format(cpu)
        write(root, d + "scaling_cur_freq", cur)
        write(root, d + "scaling_min_freq", "729600")
        write(root, d + "scaling_max_freq", "1497600")  # the power mode's cap, below the hardware's
        write(root, d + "cpuinfo_max_freq", "1510400")
    gpu = "devices/platform/bus@0/17000000.gpu/devfreq/17000000.gpu/"
    write(root, gpu + "cur_freq", "306000000")
    write(root, gpu + "min_freq", "306000000")
    write(root, gpu + "max_freq", "612000000")
    write(root, gpu + "available_frequencies", "306000000 408000000 510000000 612000000 714000000 816000000 918000000 1020000000")
    # cooling devices (kernel layout: type, cur_state, max_state): the fan, spinning at step 2 of 10
    write(root, "class/thermal/cooling_device0/type", "pwm-fan")
    write(root, "class/thermal/cooling_device0/cur_state", "2")
    write(root, "class/thermal/cooling_device0/max_state", "10")
    os.makedirs(os.path.join(root, "class/devfreq"), exist_ok=True)
    os.symlink(os.path.join(root, gpu.rstrip("/")), os.path.join(root, "class/devfreq/17000000.gpu"))
    write(root, "class/hwmon/hwmon3/name", "soctherm_oc")
    for n, count in ((1, "0"), (2, "15"), (3, "37")):
        write(root, "class/hwmon/hwmon3/oc{}_event_cnt".format(n), count)
        write(root, "class/hwmon/hwmon3/oc{}_throt_en".format(n), "1")
    write(root, "class/hwmon/hwmon0/name", "pwmfan")
    return root


@pytest.fixture
def run_exporter():
    """Start `python -m exporter.cli ARGS` on a free port; yields (base_url, process); always killed."""
    procs = []

    def start(*args, scheme="http", port=None, wait_for=None, **req):
        """``wait_for``: a text, or texts, that /metrics must all hold before it counts as up (each source
        reports when its own first sample is done: on a busy machine one may come well after another)."""
        wanted = [] if wait_for is None else [wait_for] if isinstance(wait_for, str) else list(wait_for)
        port = port or free_port()
        cmd = [sys.executable, "-m", "exporter.cli", "--web.listen-address", "127.0.0.1:{}".format(port)] + list(args)
        proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        procs.append(proc)
        url = "{}://127.0.0.1:{}".format(scheme, port)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError("exporter exited: " + proc.stderr.read())
            try:
                body = requests.get(url + "/metrics", timeout=2, **req).text
                if all(w in body for w in wanted):
                    return url, proc
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError("exporter did not serve {} in time".format(wait_for or "/metrics"))

    yield start
    for p in procs:
        stop_process(p)
        p.stdout.close()
        p.stderr.close()


def parse_metrics(text: str) -> Dict[str, float]:
    """'name{labels}' -> value for every sample line of an exposition."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out
