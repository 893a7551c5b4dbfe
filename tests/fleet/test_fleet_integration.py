"""The fleet path end to end, on loopback, with the real binaries.

Two simulated boards (`edgescope-fleet-sim`), each with its own Prometheus
agent started as deploy/prometheus-agent.service starts it (the shipped
prometheus/agent.yml, identity from the environment), remote-writing to one
VictoriaMetrics; vmalert runs the project's rules against it. Beside them a
plain local Prometheus with the stack's own prometheus.yml scrapes the same
boards and is never interrupted: the yardstick.

The tests run in order on one set of processes: data arrives with its device
labels; the central store goes down for OUTAGE_SECONDS (60 by default, as
the issue asks; FLEET_OUTAGE_SECONDS overrides) and comes back on the same
port and storage with every sample the yardstick has; vmalert evaluates every
project rule on VictoriaMetrics and its alerts reach the project's Alertmanager;
the report reads the same table from both.
"""
import json
import math
import os
import subprocess
import sys
import time
from typing import Dict, List

import pytest
import requests

from exporter.energy import board_from_rails
from fleet.cli import DEFAULT_TRACE
from fleet.device import load_trace
from tests.fleet import harness
from tests.processes import child_env
from tests.stack.harness import Alertmanager, Prometheus, Target, WebhookReceiver

SCRAPE_S = 1.0
OUTAGE_SECONDS = float(os.environ.get("FLEET_OUTAGE_SECONDS", "60"))
EPOCH_S, EPOCHS, LINGER_S, BATCH_S, BATCH_SIZE = 4.0, 3, 3.0, 0.25, 16
DEVICES = 2
VM_DIGITS = 1e-11  # VictoriaMetrics stores values with 12 significant decimal digits


PATH_CHECK_RULE = """
groups:
  - name: fleet-path-check
    rules:
      - alert: FleetAlertPathCheck
        expr: up{job="edgescope-exporter"} == 1
        labels: {severity: info}
        annotations:
          summary: "{{ $labels.device }}: alert from vmalert on VictoriaMetrics"
"""


class Fleet:
    def __init__(self, tmp) -> None:
        self.tmp = tmp
        self.started = time.time()
        self.vm = harness.victoria_metrics(tmp / "central").start()
        self.services = [self.vm]  # type: List[harness.Service]
        self.sim = harness.Simulator(tmp / "sim", DEVICES, "--epoch-seconds", str(EPOCH_S), "--epochs",
                                     str(EPOCHS), "--linger", str(LINGER_S), "--batch-seconds", str(BATCH_S),
                                     "--jitter", "0")
        self.agents = []  # type: List[harness.Service]
        for i in range(DEVICES):
            exporter_port, trainer_port = self.sim.ports(i)
            config = harness.agent_config(self.vm.url + "/api/v1/write", "{:g}s".format(SCRAPE_S), {
                "edgescope-exporter": "127.0.0.1:{}".format(exporter_port),
                "edgescope-trainer": "127.0.0.1:{}".format(trainer_port)})
            agent = harness.prometheus_agent(tmp / "agent-{}".format(i), config, self.sim.identity(i)).start()
            self.agents.append(agent)
            self.services.append(agent)
        # The project's Alertmanager config (waits cut to 1 s) with its webhook pointed here; one
        # extra always-true alert next to the project's rules proves the path vmalert -> Alertmanager.
        self.webhook = WebhookReceiver().__enter__()
        self.alertmanager = Alertmanager(tmp / "alertmanager", self.webhook.url).start()
        path_check = tmp / "path-check.yml"
        path_check.write_text(PATH_CHECK_RULE)
        self.vmalert = harness.vmalert(tmp / "vmalert", self.vm.url, extra_rules=[str(path_check)],
                                       alertmanager_url=self.alertmanager.url).start()
        self.services.append(self.vmalert)
        self.local = Prometheus(tmp / "local", scrape_interval="{:g}s".format(SCRAPE_S)).start()
        self.local.set_targets([Target(d["labels"]["device"], d["labels"]["device_type"], d["labels"]["storage"],
                                       *self.sim.ports(i)) for i, d in enumerate(self.sim.targets)])
        self.outage = None  # type: object

    def stop(self) -> None:
        self.local.stop()
        for service in reversed(self.services):
            service.stop()
        self.alertmanager.stop()
        self.webhook.__exit__()
        self.sim.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("fleet"))
    try:
        yield f
    finally:
        f.stop()


def devices(fleet: Fleet) -> List[Dict[str, str]]:
    return [fleet.sim.identity(i) for i in range(DEVICES)]


def test_agent_data_is_central_with_device_labels(fleet):
    for i, ident in enumerate(devices(fleet)):
        exporter_port, trainer_port = fleet.sim.ports(i)
        sel = '{{device="{}"}}'.format(ident["device"])
        ups = harness.wait_until(lambda: [r for r in harness.query(fleet.vm.url, "up" + sel) if r["value"][1] == "1"]
                                 if len(harness.query(fleet.vm.url, "up" + sel)) == 2 else None,
                                 30, "both jobs of {} in VictoriaMetrics".format(ident["device"]))
        by_job = {r["metric"]["job"]: r["metric"] for r in ups}
        assert set(by_job) == {"edgescope-exporter", "edgescope-trainer"}
        for job, port in (("edgescope-exporter", exporter_port), ("edgescope-trainer", trainer_port)):
            labels = by_job[job]
            # identity from the agent's external labels (environment), instance made unique per board
            assert {k: labels[k] for k in ("device", "device_type", "storage")} == ident
            assert labels["instance"] == "{}:{}".format(ident["device"], port)
        energy = harness.wait_until(lambda: harness.query(fleet.vm.url, "edgescope_board_energy_joules_total" + sel),
                                    30, "energy of " + ident["device"])
        assert len(energy) == 1 and float(energy[0]["value"][1]) > 0
        runs = harness.wait_until(lambda: harness.query(fleet.vm.url, "edgescope_train_run_info" + sel),
                                  30, "run_info of " + ident["device"])
        assert runs[0]["metric"]["run_id"].startswith(ident["device"] + "-run")
    # Every metric the yardstick scraped from a board, the central store has too (rule results aside). Remote
    # write is eventually consistent: the agents send in batches (5 s deadline; on a busy machine VictoriaMetrics
    # was seen ~10 s behind), and the trainer's per-epoch series come and go with its runs, so two stores' latest
    # samples may name different metrics. Compared: every name each store held since the fleet started, central
    # given time to receive what local had scraped.
    scraped_by = time.time()
    for ident in devices(fleet):
        sel = '{{device="{}"}}'.format(ident["device"])
        local = {n for n in harness.metric_names(fleet.local.url, sel, fleet.started, scraped_by) if ":" not in n}
        assert len(local) > 40, local
        harness.wait_until(lambda: not local - harness.metric_names(fleet.vm.url, sel, fleet.started, time.time())
                           - {"ALERTS", "ALERTS_FOR_STATE"}, 60,
                           "VictoriaMetrics to hold every metric local Prometheus scraped from " + ident["device"])


def _timestamps(url: str, selector: str, start: float, end: float) -> Dict[str, List[float]]:
    """Sample timestamps per (job, device) of `selector` in [start, end]."""
    out = {}  # type: Dict[str, List[float]]
    for key, stamps in harness.raw_samples(url, selector, start, end).items():
        labels = dict(kv.split("=", 1) for kv in key.split(","))
        out["{}/{}".format(labels["job"], labels["device"])] = stamps
    return out


def test_central_outage_loses_no_samples(fleet):
    time.sleep(3)  # some samples before the outage
    down_at = time.time()
    fleet.vm.stop()  # SIGTERM
    time.sleep(OUTAGE_SECONDS)
    fleet.vm.start()
    up_at = time.time()
    start, end = down_at - 5, up_at + 5
    # the agents retry with backoff (max 10 s), then replay the backlog from their WAL
    harness.wait_until(lambda: all(max(s) >= end for s in _timestamps(fleet.vm.url, "up", start, end + 60).values())
                       and len(_timestamps(fleet.vm.url, "up", start, end + 60)) == 2 * DEVICES,
                       60, "the agents to catch up after the outage")
    time.sleep(2)
    central = _timestamps(fleet.vm.url, "up", start, end)
    local = _timestamps(fleet.local.url, "up", start, end)
    assert set(central) == set(local) and len(central) == 2 * DEVICES
    expected = (end - start) / SCRAPE_S
    for key, stamps in central.items():
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        # one sample per scrape through the whole outage: no hole, no duplicate
        assert max(gaps) <= 1.5 * SCRAPE_S, (key, max(gaps))
        assert min(gaps) >= 0.5 * SCRAPE_S, (key, min(gaps))
        # as many as the never-interrupted local Prometheus scraped in the same window (phases differ: +-1)
        assert abs(len(stamps) - len(local[key])) <= 1, (key, len(stamps), len(local[key]))
        assert len(stamps) >= expected - 2, (key, len(stamps), expected)
    for agent in fleet.agents:
        metrics = requests.get(agent.url + "/metrics", timeout=10).text
        counters = {}  # type: Dict[str, float]
        for line in metrics.splitlines():
            if line.startswith("prometheus_remote_storage_samples_"):
                name, value = line.rsplit(" ", 1)
                counters[name.split("{")[0]] = counters.get(name.split("{")[0], 0.0) + float(value)
        assert counters.get("prometheus_remote_storage_samples_failed_total", 0.0) == 0.0, counters
        assert counters.get("prometheus_remote_storage_samples_dropped_total", 0.0) == 0.0, counters
        assert counters.get("prometheus_remote_storage_samples_retried_total", 0.0) > 0, \
            "the agent never saw the outage: {}".format(counters)
    fleet.outage = (down_at, up_at)


def test_vmalert_evaluates_every_project_rule_on_victoriametrics(fleet):
    def rules():
        body = requests.get(fleet.vmalert.url + "/api/v1/rules", timeout=10).json()
        return [r for g in body["data"]["groups"] for r in g["rules"]]

    assert len(rules()) > 10
    harness.wait_until(lambda: all(not r["lastEvaluation"].startswith("0001") for r in rules()), 30,
                       "every rule evaluated")
    # every expression of the project's rule files is valid MetricsQL and runs on VictoriaMetrics
    assert {r["name"]: r["lastError"] for r in rules() if r["lastError"] or r["health"] != "ok"} == {}
    # recording-rule results are written back into VictoriaMetrics with the boards' labels
    for expr in ("device:edgescope_board_energy_joules:rate1m", "run:edgescope_train_samples:rate1m",
                 "device_disk:edgescope_disk_reads_completed:rate1m"):
        found = harness.wait_until(lambda: harness.query(fleet.vm.url, expr), 30, expr)
        assert {r["metric"]["device"] for r in found} == {d["device"] for d in devices(fleet)}, expr


def test_vmalert_alerts_reach_alertmanager_with_the_device(fleet):
    def delivered():
        return {a["labels"]["device"]: a for a in fleet.webhook.alerts()
                if a["labels"].get("alertname") == "FleetAlertPathCheck"}

    got = harness.wait_until(lambda: len(delivered()) == DEVICES and delivered(), 60, "alerts at the webhook")
    for ident in devices(fleet):
        alert = got[ident["device"]]
        assert {k: alert["labels"][k] for k in ("device", "device_type", "storage")} == ident
        assert alert["annotations"]["summary"].startswith(ident["device"] + ":")


def _report(url: str, since: float, until: float) -> dict:
    out = subprocess.run([sys.executable, "-m", "report.cli", "--prometheus", url, "--since", repr(since),
                          "--until", repr(until), "--format", "json"], env=child_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_report_is_the_same_from_victoriametrics_as_from_local_prometheus(fleet):
    assert fleet.outage, "runs after the outage test"
    # The agents send in batches (batch_send_deadline 5 s): stop the table well before now.
    since, until = fleet.started - 60, time.time() - 10

    # Each store starts scraping a board when it is up: local Prometheus starts last, after VictoriaMetrics,
    # the agents, Alertmanager and vmalert, and on a busy machine a board's first epoch may end before that
    # store's first scrape of its exporter (the page cache at that edge is then unknown there, not wrong).
    watched_from = {}  # type: Dict[str, float]
    for url in (fleet.local.url, fleet.vm.url):
        for item in harness.query(url, 'up{{job="edgescope-exporter"}}[{}s]'.format(int(until - since) + 1), until):
            device, first = item["metric"]["device"], min(float(t) for t, _ in item["values"])
            watched_from[device] = max(watched_from.get(device, first), first)

    def settled(report: dict) -> Dict[tuple, dict]:
        """Epochs both stores watched whole: begun a scrape after each store's first scrape of the board,
        ended two scrapes before `until` (both stores, whatever their phase, saw them end)."""
        return {(e["run_id"], e["epoch"]): e for e in report["epochs"]
                if e["end_timestamp_seconds"] is not None and e["end_timestamp_seconds"] < until - 2 * SCRAPE_S
                and e["start_timestamp_seconds"] > watched_from.get(e["device"], math.inf) + SCRAPE_S}

    l_epochs = settled(_report(fleet.local.url, since, until))

    def caught_up() -> Dict[tuple, dict]:
        """Remote write is eventually consistent: after the outage the agents' queues (each trainer run is
        ~530 series, most of them histogram buckets) may still hold the newest samples for a while."""
        c = settled(_report(fleet.vm.url, since, until))
        return c if set(c) == set(l_epochs) else {}

    c_epochs = harness.wait_until(caught_up, 90, "VictoriaMetrics to hold every epoch local Prometheus holds", 2.0)
    down_at, up_at = fleet.outage
    during = [k for k, e in c_epochs.items() if down_at < e["start_timestamp_seconds"] < e["end_timestamp_seconds"] < up_at]
    assert len(during) >= DEVICES, "too few epochs run wholly inside the outage: {}".format(during)
    assert len(c_epochs) >= DEVICES * EPOCHS * 2, len(c_epochs)
    # Energy: the exporter's counter steps once per tegrastats line (by P*dt), and
    # each store interpolates it between its own scrapes at the epoch edges. With
    # a store's scrapes a fixed phase phi after the lines (no jitter here), its
    # estimate at an edge is the true integral minus P_next*phi, P_next being the
    # power of the line right after the edge; so an epoch's energy differs between
    # two stores by (phi1 - phi2) * (P_next(end) - P_next(start)): zero when those
    # lines have equal power, at most one line interval * (Pmax - Pmin) otherwise.
    powers = [board_from_rails(st.rails_w)[0] for st in load_trace(DEFAULT_TRACE)]
    # VictoriaMetrics keeps 12 significant digits: a Unix timestamp to the millisecond,
    # which moves each epoch edge by up to 1 ms of board power.
    exact_tol = 2 * 1e-3 * max(powers) + 1e-9
    energy_tol = 1.0 * (max(powers) - min(powers)) + exact_tol
    reads_tol = 2 * 2 * BATCH_SIZE  # the read counter steps by one batch at a time
    exact = 0
    for k, c in c_epochs.items():
        l_ = l_epochs[k]
        assert c["device"] == l_["device"], k
        for field in ("e2e_seconds", "fetch_stall_seconds", "compute_seconds", "start_timestamp_seconds"):
            # the trainer's gauges: the same samples, as VictoriaMetrics stores them (12 significant digits)
            assert math.isclose(c[field], l_[field], rel_tol=VM_DIGITS), (k, field, c[field], l_[field])
        assert (c["energy_joules"] is None) == (l_["energy_joules"] is None), k
        if c["energy_joules"] is not None:
            assert abs(c["energy_joules"] - l_["energy_joules"]) <= energy_tol, (k, c["energy_joules"], l_["energy_joules"])
            exact += abs(c["energy_joules"] - l_["energy_joules"]) <= exact_tol
            assert abs(c["read_iops"] - l_["read_iops"]) * c["e2e_seconds"] <= reads_tol, k
        assert abs((c["page_cache_ratio"] or 0) - (l_["page_cache_ratio"] or 0)) <= 1.5 * SCRAPE_S / EPOCH_S, k
    # The demo trace holds each real line for several seconds, so for many epochs
    # the lines around both edges have equal power and the two tables agree exactly.
    # The exporter's trapezoid rule spreads each power change over two line
    # intervals (90 % of the demo trace's steps equal the next one, 95 % under the
    # former right-hand rule), so exact agreement is less common than it was:
    # 15-16 of 32 epochs in two runs here; a third is the floor.
    assert exact >= len(c_epochs) // 3, (exact, len(c_epochs))
    assert all(c_epochs[k]["energy_joules"] is not None for k in during), "energy of epochs in the outage"
