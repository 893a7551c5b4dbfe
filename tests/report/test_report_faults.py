"""The report under a bench's ordinary faults, each through a real Prometheus
(the project's prometheus.yml, 1 s scrapes) scraping real or synthetic
endpoints of real boards' shape:

* one run id on two boards, one of them missing an epoch, stacked disks, a
  disk appearing mid-run, the trainer's own energy measurement;
* trainer and the real exporter on a board clock 10 minutes ahead and one
  10 minutes behind (Debian's faketime), no flag given to the report;
* the real exporter killed (SIGKILL) and restarted in the middle of an epoch.
"""
import io
import json
import math
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack, redirect_stdout
from typing import Dict, List, Tuple

import pytest
import requests

from report import window
from report.cli import main
from tests.processes import child_env, free_port, stop_process, wait_http_ok
from tests.report.endpoints import Exporter, Trainer
from tests.stack.harness import ExpositionServer, Prometheus, Target

SCRAPE_S = 1.0
EPOCH_S = 3.0
SHIFT_S = 600.0
# A tegrastats replay for the real exporter: board power steps between 2 W and
# 10 W every 2 s (8 lines at 0.25 s), so that an epoch edge read a fraction
# of a second off shows in its energy.
LOW_W, HIGH_W, LINES_PER_LEVEL, EXPORTER_INTERVAL = 2.0, 10.0, 8, 0.25
LINE = ("RAM 1766/3964MB (lfb 197x4MB) SWAP 0/2048MB (cached 0MB) CPU [24%@1224,15%@1224,13%@1224,10%@1224] "
        "EMC_FREQ 0% GR3D_FREQ 0% PLL@21C CPU@25C GPU@23.5C AO@33.5C thermal@24.5C POM_5V_IN {mw}/{mw} "
        "POM_5V_GPU 0/0 POM_5V_CPU 549/529")


def report(url: str, since: float) -> dict:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["--prometheus", url, "--since", repr(since - 60), "--format", "json"]) == 0
    return json.loads(out.getvalue())


def wait_scraped(prom: Prometheus, devices: List[str]) -> None:
    """Until Prometheus has scraped every board's exporter and trainer twice
    (its target discovery is throttled to a few seconds after start)."""
    def scraped() -> bool:
        counts = prom.values("count_over_time(up[1m]) >= 2")
        return all(sum(1 for k in counts if "device=" + d + "," in k) >= 2 for d in devices)
    prom.wait_until(scraped, timeout=60, what="two scrapes of every target")


def run_epochs(trainers: Dict[int, List[Trainer]], count: int, during=None) -> List[Tuple[float, float]]:
    """Epochs of EPOCH_S (real time); epoch k is published by the trainers in trainers[k];
    ``during(k)`` runs in the middle of epoch k."""
    windows = []
    for k in range(count):
        start = time.time()
        time.sleep(EPOCH_S / 2)
        if during:
            during(k)
        time.sleep(EPOCH_S / 2)
        end = time.time()
        windows.append((start, end))
        for trainer in trainers.get(k, []):
            trainer.complete(k, start, end)
    time.sleep(3 * SCRAPE_S)  # the last epoch's gauges scraped, exporter samples after its end
    return windows


def by_board(result: dict) -> Dict[str, Dict[int, dict]]:
    boards = {}  # type: Dict[str, Dict[int, dict]]
    for r in result["epochs"]:
        boards.setdefault(r["device"], {})[r["epoch"]] = r
    return boards


def wave_bound(swing: float, period: float) -> float:
    """Interpolation error of an epoch's energy at 1 s scrapes (Δt²/8 · max|dP/dt| per edge) plus jitter."""
    return 2 * SCRAPE_S ** 2 / 8 * swing * 2 * math.pi / period + 0.1


def test_one_run_id_on_two_boards_missing_epoch_and_disks(tmp_path):
    """twin-a and twin-b run the same run id at the same time: two rows, each with
    its own board's energy; twin-b never published epoch 2; twin-a's dataset is
    on dm-0 (stacked on mmcblk0), twin-b has md0 on sda and sdb appearing in
    the middle of epoch 1; twin-a measured epoch 3's energy itself."""
    run_id = "twin-run"
    a_trainer, b_trainer = Trainer(run_id), Trainer(run_id)
    a_exporter = Exporter(4.0, disks={"mmcblk0": (200.0, 0.0), "dm-0": (150.0, 0.0)},
                          dataset_disk=("/data/cifar", "dm-0"))
    b_exporter = Exporter(9.0, disks={"sda": (100.0, 0.0), "md0": (100.0, 0.0)})
    with ExitStack() as stack:
        ports = [stack.enter_context(ExpositionServer(e.render)).port for e in (a_exporter, a_trainer, b_exporter, b_trainer)]
        prom = stack.enter_context(Prometheus(tmp_path, scrape_interval="1s"))
        prom.set_targets([Target("twin-a", "nano", "sd", exporter_port=ports[0], trainer_port=ports[1]),
                          Target("twin-b", "nano", "sd", exporter_port=ports[2], trainer_port=ports[3])])
        wait_scraped(prom, ["twin-a", "twin-b"])
        began = time.time()

        def sdb_appears(k: int) -> None:
            if k == 1:
                b_exporter.disks["sdb"] = (40.0, time.time())

        windows = run_epochs({0: [a_trainer, b_trainer], 1: [a_trainer, b_trainer], 2: [a_trainer],
                              3: [a_trainer, b_trainer]}, 4, sdb_appears)
        a_trainer.complete(3, *windows[3], energy_joules=60.0, average_power_watts=60.0 / EPOCH_S,
                           energy_bound_joules=1.8)  # 20 W: a Nano can
        time.sleep(2 * SCRAPE_S)
        result = report(prom.url, began)
        # a fake exporter computes its counter when it answers, Prometheus stamps the sample when it asked: on a
        # busy machine the answer comes up to a scrape's duration after its stamp, at up to 10.5 W at each edge
        slowest = float(prom.query("max(max_over_time(scrape_duration_seconds[10m]))")[0]["value"][1])
        latency_j = 2 * slowest * (9.0 + 1.5)
    boards = by_board(result)
    assert sorted(boards) == ["twin-a", "twin-b"]
    assert sorted(boards["twin-a"]) == [0, 1, 2, 3] and sorted(boards["twin-b"]) == [0, 1, 3]
    assert [(s["run_id"], s["device"]) for s in result["summary"]] in (
        [(run_id, "twin-a"), (run_id, "twin-b")], [(run_id, "twin-b"), (run_id, "twin-a")])
    for device, exporter in (("twin-a", a_exporter), ("twin-b", b_exporter)):
        for k, r in boards[device].items():
            start, end = windows[k]
            if device == "twin-a" and k == 3:
                assert r["energy_joules"] == 60.0 and r["energy_source"] == "trainer"
                assert r["energy_bound_joules"] == 1.8  # read from Prometheus like the other epoch gauges
                continue
            truth = exporter.energy(end) - exporter.energy(start)
            assert r["energy_source"] == "exporter"
            assert abs(r["energy_joules"] - truth) <= wave_bound(1.5, 7.0) + latency_j, (
                device, k, r["energy_joules"], truth, slowest)
            # the report's own bound covers its error: each edge between the scrape before it and the first
            # one a lag (0.5 s, the published interval) after it, at up to 10.5 W over 1 s scrapes
            bound = r["energy_bound_joules"]
            assert abs(r["energy_joules"] - truth) <= bound + latency_j, (device, k, bound, slowest)
            assert bound <= 2 * (9.0 + 1.5) * (2 * SCRAPE_S + 0.5), (device, k)
    # twin-a: only the dataset's disk dm-0 (150 r/s), not mmcblk0 below it (200) nor their sum
    assert all(r["read_iops"] == pytest.approx(150.0, rel=0.03) for r in boards["twin-a"].values())
    # twin-b: sda without md0 stacked on it; sdb, there from the middle of epoch 1, left out of the epochs
    # it does not cover (without blanking them) and counted in epoch 3
    assert boards["twin-b"][0]["read_iops"] == pytest.approx(100.0, rel=0.03)
    assert boards["twin-b"][1]["read_iops"] == pytest.approx(100.0, rel=0.03)
    assert boards["twin-b"][3]["read_iops"] == pytest.approx(140.0, rel=0.03)
    notes = result["notes"]
    assert any(n.startswith("run id twin-run was seen on 2 boards (twin-") for n in notes), notes
    assert "run twin-run on twin-b: epoch 2 missing (no trainer data for it in Prometheus)" in notes
    assert not any("twin-a: epoch" in n and "missing (no trainer data" in n for n in notes)
    assert any("twin-b: reads summed over disks sda, sdb without the stacked device(s) md0" in n for n in notes), notes
    assert any("twin-b: disk sdb has no samples over all of epoch(s) 0, 1;" in n for n in notes), notes


def _tegrastats_log(path) -> str:
    lines = [LINE.format(mw=int(w * 1000)) for w in (LOW_W, HIGH_W) for _ in range(LINES_PER_LEVEL)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _start_exporter(log: str, port: int, shift: float = 0.0) -> subprocess.Popen:
    """The real exporter (python -m exporter.cli) replaying ``log``, under faketime when shifted.

    Only the wall clock is shifted (FAKETIME_DONT_FAKE_MONOTONIC=1), as on a
    board whose clock was never set. With FAKETIME_FORCE_MONOTONIC_FIX=1
    instead, libfaketime 0.9.10 fakes CLOCK_MONOTONIC too and Python >= 3.9's
    timed waits (Event.wait: sem_clockwait on the real monotonic clock) never
    return: the exporter's sampling threads stop after their first sample."""
    command = [sys.executable, "-m", "exporter.cli", "--power-source", "tegrastats", "--tegrastats-file", log,
               "--interval", str(EXPORTER_INTERVAL), "--web.listen-address", "127.0.0.1:{}".format(port)]
    env = child_env()
    if shift:
        command = ["faketime", "-f", "{:+g}s".format(shift)] + command
        env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # faketime forks the exporter: stop_process stops both
    if not wait_http_ok(process, "http://127.0.0.1:{}/metrics".format(port), 60):
        stop_process(process)
        raise AssertionError("the exporter on port {} did not start".format(port))
    return process


def _counter_now(port: int) -> float:
    """The real exporter's energy counter, read from its /metrics right now."""
    for line in requests.get("http://127.0.0.1:{}/metrics".format(port), timeout=5).text.splitlines():
        if line.startswith("edgescope_board_energy_joules_total "):
            return float(line.split()[1])
    raise AssertionError("no energy counter on port {}".format(port))


def _prometheus_energy(prom: Prometheus, device: str, lo: float, hi: float) -> List[Tuple[float, float]]:
    result = prom.query('edgescope_board_energy_joules_total{device="%s"}[%ds]' % (device, int(hi - lo) + 1), at=hi)
    return [(float(t), float(v)) for t, v in result[0]["values"]]


@pytest.mark.skipif(shutil.which("faketime") is None, reason="Debian's faketime is not installed")
def test_board_clock_ten_minutes_off_either_way(tmp_path):
    """skew-ahead: exporter and trainer 10 min ahead, the trainer publishing its
    clock; skew-behind: 10 min behind, the trainer without a clock (the report
    takes the exporter's, the same board's). The report, given no flag, reads
    the exporter's counter at the true edges."""
    log = _tegrastats_log(tmp_path / "tegrastats.log")
    ahead, behind = Trainer("skew-run-ahead", SHIFT_S), Trainer("skew-run-behind", -SHIFT_S, publish_clock=False)
    ports = {"ahead": free_port(), "behind": free_port()}
    with ExitStack() as stack:
        for name, shift in (("ahead", SHIFT_S), ("behind", -SHIFT_S)):
            process = _start_exporter(log, ports[name], shift)
            stack.callback(stop_process, process)
        trainer_ports = [stack.enter_context(ExpositionServer(t.render)).port for t in (ahead, behind)]
        prom = stack.enter_context(Prometheus(tmp_path / "prometheus", scrape_interval="1s"))
        prom.set_targets([Target("skew-ahead", exporter_port=ports["ahead"], trainer_port=trainer_ports[0]),
                          Target("skew-behind", exporter_port=ports["behind"], trainer_port=trainer_ports[1])])
        wait_scraped(prom, ["skew-ahead", "skew-behind"])
        began = time.time()
        direct = {name: [] for name in ports}  # type: Dict[str, List[float]]
        windows = []
        for k in range(3):
            start = time.time()
            firsts = {name: _counter_now(port) for name, port in ports.items()}
            time.sleep(EPOCH_S)
            lasts = {name: _counter_now(port) for name, port in ports.items()}
            end = time.time()
            windows.append((start, end))
            for name in ports:
                direct[name].append(lasts[name] - firsts[name])
            for trainer in (ahead, behind):
                trainer.complete(k, start, end)
        time.sleep(3 * SCRAPE_S)
        result = report(prom.url, began)
        raw = {d: _prometheus_energy(prom, d, began - 5, time.time()) for d in ("skew-ahead", "skew-behind")}
    boards = by_board(result)
    offsets = {s["device"]: s["clock_offset_seconds"] for s in result["summary"]}
    assert offsets["skew-ahead"] == pytest.approx(SHIFT_S, abs=0.25)
    assert offsets["skew-behind"] == pytest.approx(-SHIFT_S, abs=0.25)
    for device, name, shift in (("skew-ahead", "ahead", SHIFT_S), ("skew-behind", "behind", -SHIFT_S)):
        assert sorted(boards[device]) == [0, 1, 2]
        for k, (start, end) in enumerate(windows):
            r = boards[device][k]
            assert r["start_timestamp_seconds"] == pytest.approx(start + shift, abs=1e-3)  # the board's clock
            truth = window.increase(raw[device], start, end)  # the counter at the true edges
            print("%s epoch %d: report %.2f ± %.2f J, counter at true edges %.2f J, read directly %.2f J"
                  % (device, k, r["energy_joules"], r["energy_bound_joules"], truth, direct[name][k]))
            # an offset error of δ s moves an edge by δ: at most δ · 10 W (δ ≤ 0.25 s)
            assert abs(r["energy_joules"] - truth) <= 0.25 * HIGH_W
            # against the counter read over HTTP at the edges: one exporter sample
            # (0.25 s at ≤ 10 W) plus interpolation across a 2 ↔ 10 W step (≤ 8 W · 1 s / 4) per edge
            assert abs(r["energy_joules"] - direct[name][k]) <= 2 * (EXPORTER_INTERVAL * HIGH_W
                                                                     + (HIGH_W - LOW_W) * SCRAPE_S / 4)
            # the report's bound covers the counter's count at the edges; a direct read lags it by up to the
            # exporter's interval plus one tegrastats line at each edge
            direct_lag_j = 2 * 2 * EXPORTER_INTERVAL * HIGH_W
            assert abs(r["energy_joules"] - direct[name][k]) <= r["energy_bound_joules"] + direct_lag_j
            assert r["energy_joules"] >= LOW_W * (end - start) - 1.0
    for run_id, device in (("skew-run-ahead", "skew-ahead"), ("skew-run-behind", "skew-behind")):
        noted = [n for n in result["notes"] if n.startswith("run {} on {}: the board's clock is ".format(run_id, device))]
        assert len(noted) == 1 and noted[0].endswith(" s off the Prometheus host's; epoch edges shifted by it "
                                                     "before reading exporter samples"), result["notes"]
        assert float(noted[0].split("clock is ")[1].split()[0]) == pytest.approx(offsets[device], abs=0.1)


def test_exporter_killed_and_restarted_mid_epoch(tmp_path):
    """The real exporter gets SIGKILL in the middle of epoch 1 and is back 3 s
    later on the same port: epoch 1's energy is missing with a note naming it;
    epochs 0 and 2 are read normally."""
    log = _tegrastats_log(tmp_path / "tegrastats.log")
    port = free_port()
    trainer = Trainer("restart-run")
    processes = [_start_exporter(log, port)]
    try:
        with ExpositionServer(trainer.render) as trainer_server, Prometheus(tmp_path / "prometheus", scrape_interval="1s") as prom:
            prom.set_targets([Target("restart-1", exporter_port=port, trainer_port=trainer_server.port)])
            wait_scraped(prom, ["restart-1"])
            began = time.time()

            def kill_and_restart(k: int) -> None:
                if k == 1:
                    processes[-1].send_signal(signal.SIGKILL)
                    processes[-1].wait()
                    time.sleep(3.0)
                    processes.append(_start_exporter(log, port))

            windows = run_epochs({k: [trainer] for k in range(3)}, 3, kill_and_restart)
            result = report(prom.url, began)
            raw = _prometheus_energy(prom, "restart-1", began - 5, time.time())
    finally:
        for process in processes:
            stop_process(process)
    epochs = by_board(result)["restart-1"]
    assert sorted(epochs) == [0, 1, 2]
    assert epochs[1]["energy_joules"] is None and epochs[1]["average_power_watts"] is None
    for k in (0, 2):
        start, end = windows[k]
        assert epochs[k]["energy_source"] == "exporter"
        assert epochs[k]["energy_joules"] == pytest.approx(window.increase(raw, start, end), abs=0.25 * HIGH_W)
    restart_notes = [n for n in result["notes"] if "energy missing for epoch 1 (" in n]
    assert len(restart_notes) == 1 and "the exporter restarted" in restart_notes[0], result["notes"]
    assert "epoch 0" not in restart_notes[0] and "epoch 2" not in restart_notes[0]
    # the exporter replays a tegrastats log (replay="true"): the report says its power is a demo, not measured
    assert any(n.startswith("run restart-run on restart-1: the exporter's power source tegrastats replays a recorded "
                            "power log") and "epoch(s) 0, 2 are REPLAYED" in n
               for n in result["notes"]), result["notes"]
