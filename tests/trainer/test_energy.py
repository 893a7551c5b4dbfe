"""Per-epoch energy measured by the trainer at the epoch edges: the real trainer
(CPU) against a real exporter replaying a Jetson Nano tegrastats log, an
exporter killed and restarted mid-epoch, and the in-process power source."""
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, List, Tuple

import bcrypt
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.energy import board_from_rails
from exporter.metrics import Sample
from exporter.server import load_web_config
from exporter.sources.base import Source
from exporter.sources.tegrastats import parse_line
from tests.exporter.test_server import _cert, server_with  # noqa: F401  (the exporter's real server, a fixture)
from tests.processes import REPO, child_env, free_port, stop_process, wait_http_ok
from trainer.energy import (ExporterEnergy, Reading, epoch_energy, first_reading, metrics_url, reading_from, redacted,
                            try_read)

from .conftest import small_run_args
from .test_cli import Lines

NANO_LOG = os.path.join(REPO, "exporter", "demo", "tegrastats_nano_warming.log")
INTERVAL_S = 0.1  # the exporter's sampling interval, and its replayed tegrastats line interval
NANO_MAX_W = max(board_from_rails(parse_line(line).rails_w)[0]
                 for line in open(NANO_LOG) if line.strip() and not line.startswith("#"))


def start_exporter(port: int, log_path: str) -> subprocess.Popen:
    with open(log_path, "a") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter.cli", "--web.listen-address", "127.0.0.1:{}".format(port),
             "--power-source", "tegrastats", "--tegrastats-file", NANO_LOG, "--interval", str(INTERVAL_S)],
            cwd=REPO, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    url = "http://127.0.0.1:{}/metrics".format(port)
    assert wait_http_ok(process, url, 60), open(log_path).read()
    return process


def board_values(text: str) -> Dict[str, float]:
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name in ("edgescope_board_energy_joules_total", "edgescope_board_power_watts")}


class Poller:
    """An independent yardstick: polls the exporter every 20 ms and keeps (wall time, counter, power)
    whenever the counter changes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.points = []  # type: List[Tuple[float, float, float]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                values = board_values(requests.get(self.url, timeout=2).text)
            except requests.RequestException:
                continue
            joules = values.get("edgescope_board_energy_joules_total")
            if joules is not None and (not self.points or joules != self.points[-1][1]):
                self.points.append((time.time(), joules, values["edgescope_board_power_watts"]))

    def counter_at(self, t: float) -> float:
        return [j for (when, j, _) in self.points if when <= t][-1]

    def power_times_duration(self, start: float, end: float) -> float:
        """Integral of the polled board power over [start, end] (each value held until the next)."""
        total = 0.0
        for (t0, _, watts), (t1, _, _) in zip(self.points, self.points[1:] + [(end, 0.0, 0.0)]):
            total += watts * max(0.0, min(t1, end) - max(t0, start))
        return total

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def results(path: str) -> List[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def energy_gauges(textfile: str) -> Dict[str, float]:
    with open(textfile) as f:
        return {s.labels["epoch"]: s.value for fam in text_string_to_metric_families(f.read()) for s in fam.samples
                if s.name == "edgescope_train_epoch_energy_joules"}


def bound_gauges(textfile: str) -> Dict[str, float]:
    with open(textfile) as f:
        return {s.labels["epoch"]: s.value for fam in text_string_to_metric_families(f.read()) for s in fam.samples
                if s.name == "edgescope_train_epoch_energy_bound_joules"}


@pytest.fixture(scope="module")
def long_cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Enough images for epochs of a few seconds: many exporter samples per epoch."""
    from trainer.synthetic import write_cifar10
    root = str(tmp_path_factory.mktemp("cifar_long"))
    write_cifar10(root, train_images=1200, test_images=10, seed=3)
    return root


def long_run_args(data_dir: str, tmp: str) -> List[str]:
    args = small_run_args(data_dir, tmp)
    args[args.index("--max-batches") + 1] = "60"
    return args


@pytest.fixture
def exporter(tmp_path):
    port = free_port()
    processes = [start_exporter(port, str(tmp_path / "exporter.log"))]

    class Handle:
        url = "http://127.0.0.1:{}/metrics".format(port)

        def restart(self) -> None:
            processes[-1].kill()
            processes[-1].wait()
            processes.append(start_exporter(port, str(tmp_path / "exporter.log")))

    yield Handle()
    for process in processes:
        stop_process(process)


def test_epoch_energy_equals_the_exporter_counter_increase_and_power_times_duration(long_cifar_dir, tmp_path,
                                                                                   exporter):
    poller = Poller(exporter.url)
    args = long_run_args(long_cifar_dir, str(tmp_path))
    try:
        done = subprocess.run([sys.executable, "-m", "trainer.cli"] + args + [
            "--epochs", "3", "--exporter-url", exporter.url, "--run-id", "e1"],
            cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=600)
    finally:
        poller.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    records = results(str(tmp_path / "results.jsonl"))
    gauges = energy_gauges(str(tmp_path / "run.prom"))
    assert len(records) == 3
    # Each reading is the counter as of the exporter's last sample: an edge lags by up to one sampling
    # interval plus one replayed line interval, so an epoch is off by at most NANO_MAX_W x that.
    lag_tolerance = NANO_MAX_W * 2 * INTERVAL_S
    bounds = bound_gauges(str(tmp_path / "run.prom"))
    for record in records:
        assert record["energy_source"] == "exporter"
        joules = record["energy_joules"]
        # the yardstick's counter at the same wall-clock moments (the reads are ms from the window's edges;
        # the counter moves every 0.2 s, so at most one step of it at each edge)
        counter = poller.counter_at(record["end_time"]) - poller.counter_at(record["start_time"])
        assert joules == pytest.approx(counter, abs=NANO_MAX_W * INTERVAL_S * 2), record
        # and against the exporter's own power gauge integrated over the epoch
        assert joules == pytest.approx(poller.power_times_duration(record["start_time"], record["end_time"]),
                                       abs=lag_tolerance + NANO_MAX_W * 0.05), record
        assert record["average_power_watts"] == pytest.approx(joules / record["duration_s"], rel=0.05)
        assert 0 < record["average_power_watts"] <= NANO_MAX_W * (1 + 2 * INTERVAL_S / record["duration_s"])
        assert gauges[str(record["epoch"])] == pytest.approx(joules)
        # its bound: two lags of (interval + line interval) at up to the log's highest power, and it covers
        # the error against the power the exporter published, held between its samples
        held = poller.power_times_duration(record["start_time"], record["end_time"])
        assert 0 < record["energy_bound_joules"] <= 2 * lag_tolerance
        assert abs(joules - held) <= record["energy_bound_joules"], record
        assert bounds[str(record["epoch"])] == pytest.approx(record["energy_bound_joules"])
        print("epoch {epoch}: {duration_s:.2f} s, trainer {0:.3f} J ± {energy_bound_joules:.3f} J, counter "
              "increase {1:.3f} J, power x duration {2:.3f} J".format(joules, counter, held, **record))
    # the exporter replays the demo log (edgescope_power_source_info{replay="true"}): each epoch's energy says so,
    # without its bound (in --results: checked above)
    assert "energy 0" not in done.stdout and " J, power " in done.stdout and "replayed energy " in done.stdout, \
        done.stdout


@pytest.mark.skipif(not shutil.which("faketime"), reason="needs Debian's faketime (scripts/install-deps.sh)")
def test_a_board_clock_10_minutes_ahead_changes_the_timestamps_not_the_energy(long_cifar_dir, tmp_path, exporter,
                                                                               launch):
    """The trainer under faketime +600 s (the exporter and this test on the true clock): its wall clock and
    epoch timestamps are 600 s ahead, its epoch energy still equals the counter's increase over the epoch."""
    poller = Poller(exporter.url)
    args = long_run_args(long_cifar_dir, str(tmp_path))
    args[args.index("--metrics-port") + 1] = "0"
    env = dict(child_env(), FAKETIME_FORCE_MONOTONIC_FIX="1")
    process = subprocess.Popen(["faketime", "-f", "+600s", sys.executable, "-m", "trainer.cli"] + args + [
        "--exporter-url", exporter.url, "--metrics-addr", "127.0.0.1", "--linger", "120"], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)  # faketime forks: stop both
    try:
        lines = Lines(process.stdout)
        port = lines.wait_for(r"metrics http://127\.0\.0\.1:\d+/").split("127.0.0.1:")[1].split("/")[0]
        lines.wait_for("serving the final metrics")
        before = time.time()
        scrape = requests.get("http://127.0.0.1:{}/metrics".format(port), timeout=10).text
        after = time.time()
    finally:
        poller.stop()
        stop_process(process)
    clock = [s.value for f in text_string_to_metric_families(scrape) for s in f.samples
             if s.name == "edgescope_time_seconds"]
    assert before + 600 <= clock[0] <= after + 600
    for record in results(str(tmp_path / "results.jsonl")):
        assert record["start_time"] > time.time() + 500  # the board's clock
        counter = poller.counter_at(record["end_time"] - 600) - poller.counter_at(record["start_time"] - 600)
        assert record["energy_joules"] == pytest.approx(counter, abs=NANO_MAX_W * INTERVAL_S * 2), record


def test_exporter_killed_and_restarted_mid_epoch_gives_that_epoch_no_energy_and_a_note(long_cifar_dir, tmp_path,
                                                                                      exporter, launch):
    # The counter must be above what a freshly restarted exporter counts within the rest of an epoch (60
    # batches: seconds at most 4.5 W, even on a loaded machine): a restart that leaves the counter higher is
    # only seen through the exporter's start time (edgescope_exporter_start_time_seconds, where published).
    deadline = time.monotonic() + 180
    while board_values(requests.get(exporter.url, timeout=5).text)["edgescope_board_energy_joules_total"] < 60:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    args = long_run_args(long_cifar_dir, str(tmp_path))
    process = launch(args + ["--epochs", "3", "--exporter-url", exporter.url, "--run-id", "e2",
                             "--log-interval", "5"])
    lines = Lines(process.stdout)
    lines.wait_for(r"^epoch 1 step 5/")  # epoch 1 has read its start
    # The run held while the exporter restarts, until it counts again: on a loaded machine the new exporter's
    # start-up can outlast the rest of epoch 1 (2.5 s more than here did), and epoch 2 would begin unread.
    os.killpg(process.pid, signal.SIGSTOP)
    try:
        exporter.restart()
        deadline = time.monotonic() + 60
        while "edgescope_board_energy_joules_total" not in board_values(requests.get(exporter.url, timeout=5).text):
            assert time.monotonic() < deadline, "the restarted exporter never counted energy"
            time.sleep(0.1)
    finally:
        os.killpg(process.pid, signal.SIGCONT)
    lines.wait_for(r"^epoch 1/3")
    assert process.wait(timeout=600) == 0
    err = process.stderr.read()
    records = results(str(tmp_path / "results.jsonl"))
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert records[0]["energy_joules"] > 0 and records[2]["energy_joules"] > 0
    assert records[1]["energy_joules"] is None and records[1]["average_power_watts"] is None
    assert "epoch 1: energy unknown:" in err and "epoch 0:" not in err and "epoch 2:" not in err, err
    assert set(energy_gauges(str(tmp_path / "run.prom"))) == {"0", "2"}


def test_no_exporter_means_no_energy_not_a_zero(cifar_dir, tmp_path, capsys):
    from trainer import cli
    url = "http://127.0.0.1:{}/metrics".format(free_port())
    assert cli.main(small_run_args(cifar_dir, str(tmp_path)) + ["--exporter-url", url]) == 0
    out, err = capsys.readouterr()
    assert "NOT readable now" in out and err.count("energy unknown: no reading at the epoch's start") == 2
    assert all(r["energy_joules"] is None for r in results(str(tmp_path / "results.jsonl")))
    assert energy_gauges(str(tmp_path / "run.prom")) == {}


@pytest.mark.parametrize("given, read", [
    ("http://board:9945", "http://board:9945/metrics"),
    ("https://u:p@board:9945/", "https://u:p@board:9945/metrics"),
    ("http://board:9945/metrics", "http://board:9945/metrics"),
    ("http://board/custom/path?x=1", "http://board/custom/path?x=1"),  # a path given is kept as it is
])
def test_metrics_url(given, read):
    assert metrics_url(given) == read


class MetricsOnly(http.server.BaseHTTPRequestHandler):
    """An exporter's shape: the energy counter at /metrics, 404 elsewhere."""

    def do_GET(self) -> None:
        body = b"edgescope_board_energy_joules_total 12.5\n" if self.path == "/metrics" else b"not here\n"
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("path", ["", "/"])
def test_an_exporter_url_without_a_path_reads_its_metrics(cifar_dir, tmp_path, capsys, path):
    from trainer import cli
    server = http.server.HTTPServer(("127.0.0.1", 0), MetricsOnly)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = "http://127.0.0.1:{}{}".format(server.server_port, path)
        assert cli.main(small_run_args(cifar_dir, str(tmp_path)) + ["--exporter-url", url]) == 0
    finally:
        server.shutdown()
        server.server_close()
    out, err = capsys.readouterr()
    assert ("energy from http://127.0.0.1:{}/metrics (--exporter-url has no path: the exporter's /metrics, as "
            "Prometheus scrapes it): counter at 12.5 J".format(server.server_port)) in out
    assert "energy unknown" not in err, err
    assert [r["energy_joules"] for r in results(str(tmp_path / "results.jsonl"))] == [0.0, 0.0]


def test_evict_dataset_drops_the_data_before_every_epoch_outside_its_window(cifar_dir, tmp_path, monkeypatch):
    from trainer import cli
    calls = []
    monkeypatch.setattr(cli, "evict", lambda data_dir: calls.append((data_dir, cli.time.time())) or 0)
    args = small_run_args(cifar_dir, str(tmp_path))
    assert cli.main(args + ["--evict-dataset"]) == 0
    records = results(str(tmp_path / "results.jsonl"))
    assert [d for d, _ in calls] == [cifar_dir] * len(records) == [cifar_dir] * 2
    for (_, at), record in zip(calls, records):
        assert at <= record["start_time"]  # before the epoch's window opened


def test_auto_takes_the_tegrastats_it_falls_back_to_when_jtop_cannot_connect(monkeypatch):
    """auto lists jtop as unavailable (client/service versions disagree) before tegrastats: the in-process
    meter must take tegrastats, as the exporter does, not give up."""
    import exporter.cli
    from exporter.metrics import Sample
    from exporter.sources.base import Source, Unavailable
    from trainer.energy import InProcessEnergy

    class Steady(Source):
        name = "tegrastats"

        def sample(self):
            return [Sample("edgescope_board_power_watts", {}, 5.0)]
    monkeypatch.setattr(exporter.cli, "power_sources", lambda settings: [
        Unavailable("jtop", "Mismatch version jtop service (falling back to tegrastats)"), Steady()])
    meter = InProcessEnergy({})
    try:
        assert meter.source == "tegrastats" and meter.read().watts == 5.0
    finally:
        meter.close()


def test_in_process_power_source_integrates_a_constant_power_exactly(cifar_dir, tmp_path, capsys):
    """At --power-interval 0.1 (lines and samples every 0.1 s) the bound is 5 W x 0.1 s at each edge."""
    from trainer import cli
    log = tmp_path / "constant.log"
    log.write_text("RAM 1/2MB CPU [1%@102] VDD_IN 5000mW/5000mW VDD_CPU_GPU_CV 1000mW/1000mW\n" * 3)
    args = small_run_args(cifar_dir, str(tmp_path))
    args[args.index("--max-batches") + 1] = "10"
    assert cli.main(args + ["--power-source", "tegrastats", "--tegrastats-file", str(log),
                            "--power-interval", "0.1"]) == 0
    records = results(str(tmp_path / "results.jsonl"))
    for record in records:
        assert record["energy_source"] == "tegrastats" and record["power_replayed"]  # a recorded log, not the board
        assert record["average_power_watts"] == pytest.approx(5.0)
        # the reads sit just outside the window: microseconds of source.sample() each
        assert record["energy_joules"] == pytest.approx(5.0 * record["duration_s"], rel=0.02, abs=0.05)
        assert record["energy_bound_joules"] == pytest.approx(1.0)
    assert 'energy_source="tegrastats"' in (tmp_path / "run.prom").read_text()
    assert "edgescope_train_epoch_energy_bound_joules" in (tmp_path / "run.prom").read_text()
    exposition = (tmp_path / "run.prom").read_text()
    assert exposition.count("edgescope_train_epoch_power_replayed{") == len(records) == 2
    assert all(line.endswith(" 1.0") for line in exposition.splitlines()
               if line.startswith("edgescope_train_epoch_power_replayed{"))
    out = capsys.readouterr().out
    assert re.search(r", replayed energy [\d.]+ J, power 5\.00 W, ", out)  # said in full once, at the start:
    assert "a REPLAYED power log, not this board's power" in out
    epoch_lines = [line for line in out.splitlines() if re.match(r"^epoch \d+/\d+: ", line)]
    assert len(epoch_lines) == 2 and max(len(line) for line in epoch_lines) <= 120, out


def reading(joules: float, at: float, start: float = 100.0) -> Reading:
    return Reading(at, joules, 2.0, (start, 0.0))


def test_epoch_energy_is_none_with_a_reason_unless_both_edges_count_the_same_counter():
    assert epoch_energy(reading(10, 1), reading(25, 6), "restarted") == (15, 3.0, "", None, False)
    assert epoch_energy(reading(10, 1), reading(25, 6, start=200.0), "restarted") == \
        (None, None, "energy unknown: restarted", None, False)
    went_back = epoch_energy(reading(10, 1), reading(4, 6), "restarted")
    assert went_back.joules is None and "went back from 10.0 J to 4.0 J" in went_back.note
    failed = epoch_energy(reading(10, 1), "cannot read http://x/metrics: ConnectTimeout", "restarted")
    assert failed.joules is None and "at the epoch's end (cannot read http://x/metrics" in failed.note


def test_reading_takes_the_exporter_start_time_where_the_exporter_publishes_it():
    text = ("# TYPE edgescope_board_energy_joules_total counter\nedgescope_board_energy_joules_total 12.5\n"
            "# TYPE edgescope_board_power_watts gauge\nedgescope_board_power_watts 3.25\n"
            "# TYPE edgescope_exporter_start_time_seconds gauge\nedgescope_exporter_start_time_seconds 1.7e9\n")
    got = reading_from(((s.name, s.labels, s.value) for f in text_string_to_metric_families(text)
                        for s in f.samples), 5.0)
    assert got == Reading(5.0, 12.5, 3.25, (1.7e9, None))
    older = reading_from([("edgescope_board_energy_joules_total", {}, 1.0)], 6.0)
    assert older.continuity == (None, None) and older.watts is None and older.lag_s is None


@pytest.mark.parametrize("source, lag, resolution", [("tegrastats", 1.0, 0.0), ("jtop", 1.0, 0.0),
                                                     ("nvml", 0.5, 1e-3), ("rapl", 0.5, 1e-6)])
def test_the_bound_is_the_exporters_lag_at_both_edges_times_the_larger_edge_power(source, lag, resolution):
    """The counter is as of the exporter's last sample (its published interval ago at most), and a source of
    lines adds one line interval (the exporter runs it at its interval); a hardware counter adds its step."""
    def at(joules, watts, now):
        return reading_from([("edgescope_board_energy_joules_total", {}, joules),
                             ("edgescope_board_power_watts", {}, watts),
                             ("edgescope_exporter_interval_seconds", {}, 0.5),
                             ("edgescope_power_source_info", {"source": source, "replay": "false"}, 1.0)], now)
    used = epoch_energy(at(10.0, 3.0, 1.0), at(60.0, 5.0, 11.0), "restarted")
    assert used.joules == 50.0 and used.bound_joules == pytest.approx(5.0 * 2 * lag + 2 * resolution)
    assert epoch_energy(at(10.0, 3.0, 1.0), reading(60.0, 11.0), "x").bound_joules is None  # an old exporter
    assert not used.replayed


def test_an_exporter_replaying_a_log_makes_the_epochs_energy_replayed():
    def at(joules, replay):
        return reading_from([("edgescope_board_energy_joules_total", {}, joules),
                             ("edgescope_power_source_info", {"source": "tegrastats", "replay": replay}, 1.0)], 1.0)
    assert at(1.0, "true").replayed and not at(1.0, "false").replayed
    assert epoch_energy(at(10.0, "false"), at(60.0, "true"), "x").replayed  # either edge
    assert not epoch_energy(at(10.0, "false"), at(60.0, "false"), "x").replayed


def test_a_gap_in_the_exporters_power_readings_leaves_the_epoch_unknown():
    """The exporter credits no energy to a silence in its power source (uncovered seconds grow): an epoch
    spanning one must not be reported as if the board drew nothing then."""
    def at(joules, uncovered, now):
        return reading_from([("edgescope_board_energy_joules_total", {}, joules),
                             ("edgescope_exporter_start_time_seconds", {}, 1.7e9),
                             ("edgescope_board_energy_uncovered_seconds_total", {}, uncovered)], now)
    assert epoch_energy(at(10.0, 2.0, 1.0), at(40.0, 2.0, 11.0), "gap").joules == 30.0
    assert epoch_energy(at(10.0, 2.0, 1.0), at(25.0, 9.0, 11.0), "gap") == \
        (None, None, "energy unknown: gap", None, False)


def test_the_password_never_reaches_logs():
    assert redacted("https://user:s3cret@board:9945/metrics") == "https://user:***@board:9945/metrics"
    assert redacted("http://board:9945/metrics") == "http://board:9945/metrics"


@pytest.mark.parametrize("extra, expected", [
    (["--exporter-url", "board:9945"], "must be an http:// or https:// URL"),
    (["--exporter-url", "http://x/metrics", "--power-source", "tegrastats"], "not allowed with argument"),
    (["--power-source", "solar"], "argument --power-source: invalid choice"),
    (["--power-source", "tegrastats", "--tegrastats-file", "/nonexistent.log"], "--tegrastats-file: no file"),
    (["--exporter-ca-file", "/etc/hostname"], "--exporter-ca-file goes with --exporter-url"),
    (["--power-source", "rapl", "--tegrastats-file", "/etc/hostname"], "goes with --power-source tegrastats"),
    (["--exporter-url", "http://x/metrics", "--power-interval", "0.1"], "--power-interval goes with --power-source"),
] + ([] if shutil.which("tegrastats") else [
    (["--power-source", "tegrastats"], "--power-source tegrastats: tegrastats: tegrastats not found on PATH"),
]))
def test_bad_energy_flags_are_one_line(cifar_dir, tmp_path, capsys, extra, expected):
    from trainer import cli
    assert cli.main(small_run_args(cifar_dir, str(tmp_path)) + extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err


class BoardPower(Source):
    """A power source at a fixed counter, for the exporter's real HTTPS server."""
    name = "tegrastats"

    def sample(self) -> List[Sample]:
        return [Sample("edgescope_board_power_watts", {}, 4.5), Sample("edgescope_board_energy_joules_total", {}, 321.0)]


def test_exporter_behind_https_and_basic_auth_is_read_with_the_url_credentials(tmp_path, server_with):
    ca, _, ca_key, ca_name = _cert(tmp_path, "ca", ca=True)
    _cert(tmp_path, "server", ca_key, ca_name)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    (tmp_path / "web.yml").write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                                      "basic_auth_users:\n  prometheus: '{}'\n".format(hashed))
    port = server_with([BoardPower()], load_web_config(str(tmp_path / "web.yml")))
    url = "https://prometheus:s3cret@127.0.0.1:{}/metrics".format(port)
    reading = first_reading(ExporterEnergy(url, ca), 10.0)
    assert isinstance(reading, Reading) and (reading.joules, reading.watts) == (321.0, 4.5)
    wrong = try_read(ExporterEnergy(url.replace("s3cret", "wrong"), ca))
    assert wrong == "https://prometheus:***@127.0.0.1:{}/metrics answered HTTP 401 Unauthorized".format(port)
    untrusted = try_read(ExporterEnergy(url))  # the system CAs do not know this one
    assert untrusted == "cannot read https://prometheus:***@127.0.0.1:{}/metrics: SSLError".format(port)


def test_in_process_energy_follows_a_hardware_counter_and_an_outage_voids_the_epoch(tmp_path):
    """The exporter's RAPL source on a fake powercap tree: 10 J counted between two readings come back as
    10 J; a failed sample between two readings makes that span unknown, with the source's reason."""
    from exporter.config import SETTINGS
    from trainer.energy import InProcessEnergy
    zone = tmp_path / "class" / "powercap" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    counter = [5000000]

    def count(joules: float) -> None:
        counter[0] += int(joules * 1e6)
        (zone / "energy_uj").write_text("{}\n".format(counter[0]))

    count(0)
    settings = dict({s.name: s.default for s in SETTINGS}, **{"power-source": "rapl", "sysfs-root": str(tmp_path)})
    meter = InProcessEnergy(settings)
    try:
        assert meter.source == "rapl"
        count(1.0)
        assert isinstance(first_reading(meter, 10.0), Reading)  # RAPL's power needs two samples
        start = meter.read()
        time.sleep(1.0)
        count(10.0)
        measured = epoch_energy(start, meter.read(), meter.broken)
        # power is the counter's increase over the source's own sampling times, integrated over the reader's:
        # the two clocks are read microseconds apart, against a second between the readings
        assert measured.joules == pytest.approx(10.0, rel=0.02) and measured.note == ""
        start = meter.read()
        zone.rename(tmp_path / "gone")
        assert "no RAPL zones" in try_read(meter)
        (tmp_path / "gone").rename(zone)
        count(10.0)
        voided = epoch_energy(start, meter.read(), meter.broken)
        assert voided.joules is None and "power source rapl was down during the epoch (last: no RAPL zones" \
            in voided.note
    finally:
        meter.close()


def replayed_energy(lines: List[Tuple[float, float]], start: float, end: float) -> float:
    """Σ P·Δt of the replayed lines over [start, end]: each line's board power held until the next line."""
    total = 0.0
    for (t0, watts), (t1, _) in zip(lines, lines[1:] + [(end, 0.0)]):
        total += watts * max(0.0, min(t1, end) - max(t0, start))
    return total


@pytest.mark.parametrize("interval", [1.0, 0.1])
def test_the_in_process_bound_covers_the_error_against_the_replayed_lines(monkeypatch, interval):
    """The Nano log replayed in-process (tegrastats source, one line per ``interval``, sampled every
    ``interval``): each epoch's energy is within its bound of the lines' own Σ P·Δt, and the bound is
    the larger edge power times one line interval per edge."""
    from exporter.config import SETTINGS
    from exporter.sources.tegrastats import TegrastatsSource
    from trainer.energy import InProcessEnergy
    lines = []  # type: List[Tuple[float, float]]  # (arrival on the monotonic clock, board watts)
    take = TegrastatsSource._take

    def spy(self, line):
        lines.append((time.monotonic(), board_from_rails(parse_line(line).rails_w)[0]))
        take(self, line)
    monkeypatch.setattr(TegrastatsSource, "_take", spy)
    settings = dict({s.name: s.default for s in SETTINGS}, **{
        "power-source": "tegrastats", "tegrastats-file": NANO_LOG, "interval": interval})
    meter = InProcessEnergy(settings, interval)
    errors, bounds = [], []
    try:
        start = first_reading(meter, 10.0)
        for seconds in (0.77, 2.3, 3.1, 4.9, 1.3):  # edges at any phase of the lines and the sampler
            time.sleep(seconds)
            end = meter.read()
            used = epoch_energy(start, end, meter.broken)
            truth = replayed_energy(lines, start.monotonic, end.monotonic)
            assert used.bound_joules == pytest.approx(max(start.watts, end.watts) * 2 * interval)
            assert abs(used.joules - truth) <= used.bound_joules, (seconds, used, truth)
            errors.append(abs(used.joules - truth))
            bounds.append(used.bound_joules)
            start = end
    finally:
        meter.close()
    print("in-process at {} s: |error| up to {:.3f} J (mean {:.3f} J), bound {:.3f}-{:.3f} J".format(
        interval, max(errors), sum(errors) / len(errors), min(bounds), max(bounds)))
