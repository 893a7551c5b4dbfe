"""End to end through real scraping: a real Prometheus scrapes a trainer
endpoint and an exporter endpoint (prometheus_client, with the contract's
metric names) every second; identity comes only from the target labels
(job, device, device_type, storage) in prometheus.yml, as in the stack.
Energy is checked against the exact integral of the power the fake exporter
integrates."""
import json
import math
import time

import pytest
import requests
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from report.cli import main
from tests.stack.harness import Prometheus, Target, free_port

SCRAPE = 1.0
BASE_W, SWING_W, PERIOD_S = 4.0, 1.5, 7.0
EPOCH_S = 2.5


def power(t):
    return BASE_W + SWING_W * math.sin(2 * math.pi * t / PERIOD_S)


def energy(t):
    return BASE_W * t + SWING_W * PERIOD_S / (2 * math.pi) * (1 - math.cos(2 * math.pi * t / PERIOD_S))


class Exporter:
    """Counters computed exactly at scrape time from the known power wave."""

    def __init__(self):
        self.t0 = time.time()

    def collect(self):
        now = time.time()
        e = CounterMetricFamily("edgescope_board_energy_joules", "Board energy.")
        e.add_metric([], energy(now) - energy(self.t0))
        yield e
        p = GaugeMetricFamily("edgescope_board_power_watts", "Board power.")
        p.add_metric([], power(now))
        yield p
        reads = CounterMetricFamily("edgescope_disk_reads_completed", "Reads.", labels=["disk"])
        reads.add_metric(["mmcblk0"], 150.0 * (now - self.t0))
        yield reads
        read_bytes = CounterMetricFamily("edgescope_disk_read_bytes", "Bytes read.", labels=["disk"])
        read_bytes.add_metric(["mmcblk0"], 150.0 * 4096 * (now - self.t0))
        yield read_bytes
        cache = GaugeMetricFamily("edgescope_dataset_page_cache_ratio", "Cached.", labels=["dataset"])
        cache.add_metric(["/data/cifar"], 0.5)
        yield cache
        yield GaugeMetricFamily("edgescope_exporter_interval_seconds", "Sampling interval.", value=0.5)


@pytest.fixture
def live_prometheus(tmp_path):
    """The project's prometheus.yml scraping a fake exporter and trainer of one board."""
    exporter_registry, trainer_registry = CollectorRegistry(), CollectorRegistry()
    exporter_registry.register(Exporter())
    exporter_port, trainer_port = free_port(), free_port()
    servers = [start_http_server(exporter_port, addr="127.0.0.1", registry=exporter_registry),
               start_http_server(trainer_port, addr="127.0.0.1", registry=trainer_registry)]
    try:
        with Prometheus(tmp_path, scrape_interval="1s") as prom:
            prom.set_targets([Target("live-1", "nano", "sd", exporter_port=exporter_port,
                                     trainer_port=trainer_port)])
            yield prom.url, trainer_registry
    finally:
        for server in servers:
            if isinstance(server, tuple):  # prometheus_client >= 0.16 returns (server, thread)
                server[0].shutdown()


def test_report_on_live_scraped_trainer_and_exporter(live_prometheus, capsys):
    url, registry = live_prometheus
    run_id = "live-run"
    info = Gauge("edgescope_train_run_info", "Run configuration.", ["run_id", "model", "batch_size", "workers",
                                                                    "data_dir"], registry=registry)
    info.labels(run_id, "resnet18", "16", "2", "/data/cifar").set(1)
    gauges = {name: Gauge("edgescope_train_epoch_" + name, name, ["run_id", "epoch"], registry=registry)
              for name in ("start_timestamp_seconds", "end_timestamp_seconds", "duration_seconds",
                           "fetch_stall_seconds", "compute_seconds")}
    # Prometheus starts scraping ~5 s after it is ready (its target discovery is
    # throttled): wait for two exporter samples before the first epoch starts.
    deadline = time.time() + 30
    while True:
        result = requests.get(url + "/api/v1/query", params={"query": "count_over_time(up{job='edgescope-exporter'}[1m])"},
                              timeout=5).json()["data"]["result"]
        if result and float(result[0]["value"][1]) >= 2:
            break
        assert time.time() < deadline, "the exporter target was never scraped"
        time.sleep(0.3)
    windows = []
    for epoch in range(3):
        start = time.time()
        time.sleep(EPOCH_S)
        end = time.time()
        windows.append((start, end))
        for name, value in (("start_timestamp_seconds", start), ("end_timestamp_seconds", end),
                            ("duration_seconds", end - start), ("fetch_stall_seconds", 0.4 + epoch),
                            ("compute_seconds", 1.9 - 0.5 * epoch)):
            gauges[name].labels(run_id, str(epoch)).set(value)
    time.sleep(2.5)  # the last epoch's gauges scraped, exporter samples after its end
    capsys.readouterr()
    assert main(["--prometheus", url, "--run", run_id, "--since", "10m", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["epoch"] for r in report["epochs"]] == [0, 1, 2]
    assert report["notes"] == []
    # The fake exporter computes its counters when it answers, Prometheus stamps the sample when it asked: on a
    # busy machine the answer comes up to a scrape's duration after its stamp (answers up to 100 ms late put the
    # read rate 2.4 % off), at each edge.
    slowest = float(requests.get(url + "/api/v1/query", timeout=5, params={
        "query": "max(max_over_time(scrape_duration_seconds[10m]))"}).json()["data"]["result"][0]["value"][1])
    latency_j = 2 * slowest * (BASE_W + SWING_W)
    # 1 s scrapes: interpolation error ≤ 2 · Δt²/8 · max|dP/dt| per epoch, plus scrape-timing jitter
    bound = 2 * SCRAPE ** 2 / 8 * SWING_W * 2 * math.pi / PERIOD_S + 0.1 + latency_j
    for record, (start, end) in zip(report["epochs"], windows):
        assert record["device"] == "live-1"  # the trainer's target label, joined to the exporter's
        assert record["start_timestamp_seconds"] == pytest.approx(start) and record["e2e_seconds"] == \
            pytest.approx(end - start)
        assert abs(record["energy_joules"] - (energy(end) - energy(start))) <= bound, slowest
        # and the report's own bound, worst case over the scrapes around each edge, holds the error too
        error = abs(record["energy_joules"] - (energy(end) - energy(start)))
        assert error <= record["energy_bound_joules"] + latency_j, slowest
        assert abs(record["read_iops"] - 150.0) <= 150.0 * (0.02 + 2 * slowest / (end - start)), slowest
        assert record["page_cache_ratio"] == 0.5
    summary = report["summary"][0]
    assert summary["epochs_included"] == [1, 2] and summary["device_type"] == "nano" and summary["storage"] == "sd"
    assert summary["fetch_stall_seconds"]["mean"] == pytest.approx((1.4 + 2.4) / 2)
