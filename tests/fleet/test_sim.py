"""The fleet simulator on its own: contract, energy, phase and jitter, runs, CLI."""
import os
import signal
import socket
import subprocess
import sys

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.energy import board_from_rails
from exporter.metrics import METRICS, check
from fleet.cli import DEFAULT_TRACE
from fleet.device import SimulatedDevice, load_trace, make_fleet
from tests.fleet import harness
from tests.fulldisk import disk  # noqa: F401  (the fixture)
from tests.processes import child_env

TRACE = load_trace(DEFAULT_TRACE)


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def device(clock, index=0, **kwargs) -> SimulatedDevice:
    return SimulatedDevice(index, "sim-{:04d}".format(index), "nano", "sd", TRACE, seed=7, clock=clock, **kwargs)


def families(body: bytes):
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def test_exposition_is_the_contract_and_passes_promtool():
    clock = Clock()
    d = device(clock, epoch_seconds=2.0, epochs=2)
    clock.t += 5.0
    exporter_body, trainer_body = d.render("exporter"), d.render("trainer")
    check(d.exporter.samples())  # names and label sets of docs/metrics.md, exporter section
    exported = families(exporter_body)
    assert {"edgescope_board_energy_joules", "edgescope_board_power_watts", "edgescope_disk_reads_completed",
            "edgescope_dataset_page_cache_ratio", "edgescope_temperature_celsius"} <= set(exported)
    assert all(name + ("_total" if METRICS.get(name + "_total") else "") in METRICS for name in exported)
    trained = families(trainer_body)
    assert {"edgescope_train_fetch_stall_seconds", "edgescope_train_compute_seconds", "edgescope_train_batch_seconds",
            "edgescope_train_epoch_duration_seconds", "edgescope_train_run_info"} <= set(trained)
    for body in (exporter_body, trainer_body):
        out = subprocess.run([harness.binary("promtool"), "check", "metrics"], input=body,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        assert out.returncode == 0, out.stdout.decode()


def test_energy_is_the_integral_of_the_replayed_real_lines():
    clock = Clock()
    d = device(clock, jitter=0.0)
    first = d.exporter.line
    first_at = d.exporter.next_line_at
    lines = 37  # across the log's end: it loops
    clock.t = first_at + (lines - 1) + 0.5
    d.exporter.advance(clock.t)
    # the first line opens the window; each later line adds (P_i-1 + P_i) / 2 * 1 s (trapezoid rule)
    board = [board_from_rails(TRACE[(first + k) % len(TRACE)].rails_w)[0] for k in range(lines)]
    expected = sum((board[k - 1] + board[k]) / 2 for k in range(1, lines))
    energy = [s.value for s in d.exporter.samples() if s.name == "edgescope_board_energy_joules_total"]
    assert energy == [pytest.approx(expected, rel=1e-12)]
    power = [s.value for s in d.exporter.samples() if s.name == "edgescope_board_power_watts"]
    assert power == [board_from_rails(TRACE[(first + lines - 1) % len(TRACE)].rails_w)[0]]


def test_every_board_has_its_own_phase_and_jitter():
    clock = Clock()
    fleet = make_fleet(8, TRACE, "nano", seed=3, clock=clock, jitter=0.1)
    assert len({d.exporter.line for d in fleet}) >= 5  # where in the log each starts
    assert len({round(d.exporter.next_line_at - clock.t, 6) for d in fleet}) == 8  # when in the second
    d = fleet[0]
    stamps = []
    for _ in range(200):
        stamps.append(d.exporter.next_line_at)
        d.exporter.advance(d.exporter.next_line_at)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert 0.9 - 1e-9 <= min(gaps) < 0.95 and 1.05 < max(gaps) <= 1.1 + 1e-9
    assert sum(gaps) / len(gaps) == pytest.approx(1.0, abs=0.02)
    one, two = (make_fleet(8, TRACE, "nano", seed=3, clock=Clock(), jitter=0.1) for _ in range(2))
    assert [x.exporter.line for x in one] == [x.exporter.line for x in two]  # reproducible from the seed


def test_runs_epochs_and_histograms_follow_the_trainer_contract():
    clock = Clock()
    start = clock.t
    d = device(clock, epochs=3, epoch_seconds=2.0, batch_seconds=0.25, linger_s=1000.0, batch_size=16)
    clock.t += 30.0  # 3 epochs of 8 batches (about 7 s) are over; the run lingers
    run1 = families(d.render("trainer"))
    ends = sorted((s.labels["epoch"], s.value) for s in run1["edgescope_train_epoch_end_timestamp_seconds"].samples)
    starts = sorted((s.labels["epoch"], s.value) for s in run1["edgescope_train_epoch_start_timestamp_seconds"].samples)
    assert [e for e, _ in ends] == ["0", "1", "2"]
    assert starts[0][1] == start and all(starts[i + 1][1] == ends[i][1] for i in range(2))  # back to back
    durations = {s.labels["epoch"]: s.value for s in run1["edgescope_train_epoch_duration_seconds"].samples}
    stalls = {s.labels["epoch"]: s.value for s in run1["edgescope_train_epoch_fetch_stall_seconds"].samples}
    computes = {s.labels["epoch"]: s.value for s in run1["edgescope_train_epoch_compute_seconds"].samples}
    for e in durations:
        assert durations[e] == pytest.approx(ends[int(e)][1] - starts[int(e)][1], abs=1e-6)
        assert 0 < stalls[e] + computes[e] < durations[e]  # the rest is per-batch overhead
    assert stalls["0"] / durations["0"] > stalls["2"] / durations["2"]  # epoch 0 reads from disk
    counts = [s.value for s in run1["edgescope_train_batch_seconds"].samples if s.name.endswith("_count")]
    assert counts == [24.0]
    samples = [s.value for s in run1["edgescope_train_samples"].samples if s.name.endswith("_total")]
    assert samples == [24 * 16.0]
    assert [s.value for s in run1["edgescope_train_running"].samples] == [0.0]
    assert d.trainer.reads == 8 * 16 and d.trainer.cache_ratio == 1.0  # epoch 0 read the dataset into the cache

    clock = Clock()
    d = device(clock, epochs=3, epoch_seconds=2.0, batch_seconds=0.25, linger_s=4.0)
    clock.t += 13.0  # run 1 (about 7 s) and its linger are over, run 2 is training
    now = families(d.render("trainer"))
    running = now["edgescope_train_running"].samples
    assert [(s.labels["run_id"], s.value) for s in running] == [("sim-0000-run2", 1.0)]


def run_cli(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "fleet.cli"] + list(args), env=child_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)


@pytest.mark.parametrize("args, names", [
    (["--listen", "0.0.0.0"], "--listen 0.0.0.0"),
    (["--devices", "0"], "--devices"),
    (["--trace", "/nonexistent/trace.log"], "--trace /nonexistent/trace.log"),
    (["--base-port", "65000", "--devices", "1000"], "--base-port 65000"),
    (["--jitter", "0.6"], "--jitter"),
    (["--devices", "1", "--base-port", "0", "--targets-file", "/nonexistent/t.yml"],
     "cannot write --targets-file /nonexistent/t.yml: No such file or directory; pick another --targets-file"),
])
def test_bad_input_is_one_line_naming_the_flag(args, names):
    out = run_cli(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert names in lines[-1] and "Traceback" not in out.stderr


def test_a_targets_file_on_a_full_disk_keeps_the_previous_one(disk):
    path = disk.path("targets.yml")
    with open(path, "w") as f:
        f.write("- targets: [127.0.0.1]\n")
    disk.fill()
    out = run_cli("--devices", "1", "--base-port", "0", "--targets-file", path)
    assert out.returncode == 2
    assert out.stderr == ("edgescope-fleet-sim: cannot write --targets-file {}: No space left on device (0.0 MB free there); free space "
                          "or pick another --targets-file\n".format(path))
    assert open(path).read() == "- targets: [127.0.0.1]\n"
    assert sorted(os.listdir(disk.root)) == ["filler", "targets.yml"]


def test_busy_port_is_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        out = run_cli("--devices", "1", "--base-port", str(port))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and str(port) in out.stderr and "--base-port" in out.stderr


def test_serves_loopback_and_stops_cleanly_on_sigterm(tmp_path):
    sim = harness.Simulator(tmp_path, 3)
    try:
        assert len(sim.targets) == 3
        for i in range(3):
            exporter_port, trainer_port = sim.ports(i)
            url = "http://127.0.0.1:{}/metrics".format(exporter_port)
            body = harness.wait_until(lambda: "edgescope_board_energy_joules_total" in requests.get(url, timeout=5).text,
                                      5, "the first tegrastats line")
            assert body
            body = requests.get("http://127.0.0.1:{}/metrics".format(trainer_port), timeout=5).text
            assert 'edgescope_train_run_info{' in body and sim.identity(i)["device"] in body
            assert requests.get("http://127.0.0.1:{}/other".format(trainer_port), timeout=5).status_code == 404
        entry = yaml.safe_load(sim.targets_file.read_text())[1]
        assert entry["labels"]["device"] == "sim-0001" and entry["labels"]["storage"] == "ssd"
        assert entry["targets"] == ["127.0.0.1"]
    finally:
        sim.process.send_signal(signal.SIGTERM)
        code = sim.process.wait(timeout=20)
    assert code == 0
    assert "stopped after" in sim.log_path.read_text()
