"""The whole stack, live: real Prometheus + real exporter + real training run.

One board, "itest-orin", as Prometheus would see a Jetson Orin:
* the exporter (python -m exporter.cli) replays the shipped tegrastats demo
  log as its power source, reads a fake sysfs tree with the Orin layout
  (tests/exporter's make_orin_sysfs), the machine's real /proc/diskstats and
  the page cache of the training data;
* the trainer (python -m trainer.cli) trains mobilenet_v3_small on a
  synthetic CIFAR-10 on the CPU for 3 short epochs and lingers;
* Prometheus runs the project's prometheus.yml and rules, and sends its
  alerts to Alertmanager running the project's alertmanager.yml with the
  webhook pointed at a local receiver (tests/stack/harness.py).

During the run the fake sysfs replays an over-temperature of the cpu-thermal
zone (above its 99 °C passive trip point), later three over-current events.
Then, through the HTTP API: every recording rule has produced data; every
query of every dashboard panel returns data with Grafana's variables filled
in; the throttling alerts fire and reach the webhook; the per-epoch energy
from the rules agrees with the exporter's energy counter.
"""
import contextlib
import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple

import pytest

from report.configuration import KNOB_NAMES
from tests.stack.catalog import (REPO, dashboard_queries, metric_names, needs_synthetic_data, rule_names,
                                 substitute)
from tests.processes import child_env, free_port, log_tail, stop_process, wait_http_ok
from tests.stack.harness import Alertmanager, Prometheus, Target, WebhookReceiver

if importlib.util.find_spec("exporter.cli") is None or importlib.util.find_spec("trainer.cli") is None:
    pytest.skip("needs the exporter and trainer packages", allow_module_level=True)

from tests.exporter.conftest import make_orin_sysfs  # noqa: E402  (the exporter's real-layout tree)

DEVICE = "itest-orin"
RUN_ID = "itest-run"
EPOCHS = 3
DEMO_LOG = REPO / "exporter" / "demo" / "tegrastats_nano_warming.log"
HOT_MILLI_C = "101000"                  # above the Orin cpu-thermal passive trip point (99 °C)
# Prometheus scrapes and evaluates every 0.25 s and the exporter samples every
# 0.5 s (each sample one replayed tegrastats line): the epochs here last
# seconds, and the rule attributes power to an epoch at the resolution of
# one scrape/evaluation interval at each boundary. In production (15 s
# scrapes) epochs last minutes: about the same ratio.
INTERVAL = 0.25
EXPORTER_INTERVAL = 0.5
RATE_INTERVAL = "1s"                    # Grafana: max(4 x scrape interval, step)
# Per-epoch energy, rule vs counter: both integrate the same power samples;
# they differ by the attribution of about one interval around each epoch
# boundary to one epoch or the next, and by sampling the gauge at scrapes
# while the replayed power steps between levels up to 25 % apart. So the
# per-epoch bound is 10 % plus one evaluation interval of the board's highest
# power at each of the epoch's two boundaries (the epoch label comes from the
# trainer's last scrape); that second term matters for short epochs (one CI
# run: an 8 s epoch off by 10.3 %, within 10 % + 2.3 J).
ENERGY_TOLERANCE = 0.10


class Stack(NamedTuple):
    prom: Prometheus
    started: float                      # Unix time before the trainer started
    sysfs: Path
    webhook: WebhookReceiver            # behind the project's Alertmanager config
    trainer_log: Path                   # what the trainer printed


def spawn(args: List[str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m"] + args, env=child_env(), cwd=str(REPO),
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    if not wait_http_ok(process, url, timeout):
        raise AssertionError("%s did not answer in %.0f s (exit code %s): %s"
                             % (url, timeout, process.poll(), log_tail(log)))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    data, sysfs = tmp / "data", Path(make_orin_sysfs(tmp / "sys"))
    subprocess.run([sys.executable, "-m", "trainer.datasets_cli", "cifar10", "--out", str(data),
                    "--train-images", "2400", "--test-images", "16"],
                   env=child_env(), cwd=str(REPO), check=True, stdout=subprocess.DEVNULL)

    with contextlib.ExitStack() as cleanup:   # unwinds in reverse: trainer, Prometheus, exporter, ...
        webhook = cleanup.enter_context(WebhookReceiver())
        alertmanager = cleanup.enter_context(Alertmanager(tmp / "alertmanager", webhook.url))

        exporter_port, trainer_port = free_port(), free_port()
        exporter_log = tmp / "exporter.log"
        exporter = spawn(
            ["exporter.cli", "--web.listen-address", "127.0.0.1:%d" % exporter_port,
             "--interval", str(EXPORTER_INTERVAL), "--power-source", "tegrastats",
             "--tegrastats-file", str(DEMO_LOG), "--dataset", str(data), "--pagecache-interval", "2",
             "--sysfs-root", str(sysfs)], exporter_log)
        cleanup.callback(stop_process, exporter)
        wait_http("http://127.0.0.1:%d/metrics" % exporter_port, exporter, exporter_log)

        prom = cleanup.enter_context(Prometheus(
            tmp / "prometheus", scrape_interval="%dms" % (INTERVAL * 1000),
            evaluation_interval="%dms" % (INTERVAL * 1000), alertmanager=alertmanager.address))
        prom.set_targets([Target(DEVICE, "agx-orin", "ssd", exporter_port=exporter_port,
                                 trainer_port=trainer_port)])
        prom.wait_for('up{job="edgescope-exporter"} == 1')

        # replayed over-temperature: the alert fires 30 s later (for: 30s)
        (sysfs / "class/thermal/thermal_zone0/temp").write_text(HOT_MILLI_C)

        started = time.time()
        trainer_log = tmp / "trainer.log"
        trainer = spawn(
            ["trainer.cli", "--model", "mobilenet_v3_small", "--dataset", "cifar10",
             "--data-dir", str(data), "--epochs", str(EPOCHS), "--max-batches", "150",
             "--batch-size", "16", "--workers", "1", "--device", "cpu", "--seed", "1",
             "--metrics-port", str(trainer_port), "--metrics-addr", "127.0.0.1",
             "--linger", "180", "--log-interval", "40",
             "--run-id", RUN_ID, "--device-name", DEVICE,
             "--exporter-url", "http://127.0.0.1:%d" % exporter_port], trainer_log)
        cleanup.callback(stop_process, trainer)
        # finished training and scraped as such, still serving (--linger)
        prom.wait_until(lambda: prom.query('edgescope_train_running{run_id="%s"} == 0' % RUN_ID),
                        timeout=600, what="the run to finish; trainer log:\n%s" % trainer_log)
        assert trainer.poll() is None, trainer_log.read_text()
        yield Stack(prom, started, sysfs, webhook, trainer_log)


def test_every_recording_rule_produced_data(stack: Stack) -> None:
    span = "%ds" % (time.time() - stack.started + 60)
    empty = [rule for rule in sorted(rule_names())
             if not stack.prom.query('last_over_time(%s{device="%s"}[%s])' % (rule, DEVICE, span))]
    assert not empty, "recording rules without data: %s" % empty


def grafana_variables(stack: Stack) -> Dict[str, str]:
    seconds = int(time.time() - stack.started) + 60
    every_knob = {name: ".*" for name in KNOB_NAMES}  # the comparison's filters at "All" (their allValue)
    return dict(every_knob, device=DEVICE, run=RUN_ID, device_type="agx-orin", storage="ssd",
                model="mobilenet_v3_small", workers="1", __rate_interval=RATE_INTERVAL,
                __range="%ds" % seconds, __interval=RATE_INTERVAL)


# queries of series this stack cannot produce run in test_dashboards.py (synthetic targets)
@pytest.mark.parametrize("query", [q for q in dashboard_queries() if not needs_synthetic_data(q)],
                         ids=lambda q: "%s:%s:%s" % (q.dashboard, q.where, sorted(metric_names(q.expr))[0]))
def test_every_dashboard_query_returns_data(stack: Stack, query) -> None:
    expr = substitute(query.expr, grafana_variables(stack))
    assert "$" not in expr, "unsubstituted variable in %r" % expr
    result = stack.prom.query_range(expr, start=stack.started, end=time.time(), step=INTERVAL)
    values = [v for series in result for _, v in series["values"] if v not in ("NaN", "+Inf", "-Inf")]
    assert values, "%s / %s: no data from %s" % (query.dashboard, query.where, expr)


def test_a_misspelt_metric_returns_no_data(stack: Stack) -> None:
    """The check above can fail: one letter off and the query is empty."""
    assert stack.prom.query('rate(edgescope_board_energy_joule_total{device="%s"}[1m])' % DEVICE) == []
    assert stack.prom.query('rate(edgescope_board_energy_joules_total{device="%s"}[1m])' % DEVICE)


def test_replayed_over_temperature_fires_the_throttling_alert(stack: Stack) -> None:
    alert = stack.prom.wait_for_alert("EdgescopeThermalTripPointReached", "firing", timeout=90)
    assert alert["labels"]["device"] == DEVICE and alert["labels"]["zone"] == "cpu-thermal"
    assert alert["annotations"]["summary"] == \
        "itest-orin: thermal zone cpu-thermal reached its trip point (101 °C)"
    # three over-current events now
    (stack.sysfs / "class/hwmon/hwmon3/oc1_event_cnt").write_text("3")
    over_current = stack.prom.wait_for_alert("EdgescopeOverCurrentThrottling", "firing", timeout=30)
    # delivered through the project's Alertmanager route to the webhook receiver
    delivered = stack.prom.wait_until(
        lambda: [a for a in stack.webhook.alerts()
                 if a["labels"]["alertname"] == "EdgescopeThermalTripPointReached"],
        timeout=30, what="the thermal alert at the webhook")
    assert delivered[0]["status"] == "firing" and delivered[0]["labels"]["device"] == DEVICE
    assert delivered[0]["annotations"]["summary"] == alert["annotations"]["summary"]
    assert over_current["labels"]["sensor"] == "oc1"
    # the cool zones and steady counters do not alert
    firing = [(a["labels"]["alertname"], a["labels"].get("zone"), a["labels"].get("sensor"))
              for a in stack.prom.alerts()]
    assert ("EdgescopeThermalTripPointReached", "gpu-thermal", None) not in firing
    assert not [f for f in firing if f[0] == "EdgescopeOverCurrentThrottling" and f[2] != "oc1"]
    # the targets and sources are up: a Down alert pending from one scrape over its 0.25 s timeout on a busy machine
    # (up 0 for that scrape alone) clears at the next evaluation; one that stays is a real outage
    down = ("EdgescopeTrainerDown", "EdgescopeExporterDown", "EdgescopePowerSourceDown")
    stack.prom.wait_until(lambda: not [a for a in stack.prom.alerts() if a["labels"]["alertname"] in down],
                          timeout=10, what="no Down alert, pending or firing")


def test_rule_energy_per_epoch_agrees_with_the_energy_counter(stack: Stack) -> None:
    prom = stack.prom
    selector = '{run_id="%s"}' % RUN_ID
    rule = {s["metric"]["epoch"]: float(s["value"][1]) for s in prom.query(
        "last_over_time(run_epoch:edgescope_board_energy_joules:increase_in_epoch%s[30m])" % selector)}
    ends = {s["metric"]["epoch"]: float(s["value"][1])
            for s in prom.query("edgescope_train_epoch_end_timestamp_seconds" + selector)}
    durations = {s["metric"]["epoch"]: float(s["value"][1])
                 for s in prom.query("edgescope_train_epoch_duration_seconds" + selector)}
    assert set(rule) == set(ends) == {str(e) for e in range(EPOCHS)}
    peak_w = float(prom.query('max_over_time(edgescope_board_power_watts{device="%s"}[30m])' % DEVICE)[0]["value"][1])
    boundary_j = 2 * INTERVAL * peak_w
    for epoch, end in sorted(ends.items()):
        counter = prom.query('increase(edgescope_board_energy_joules_total{device="%s"}[%dms])'
                             % (DEVICE, round(durations[epoch] * 1000)), at=end)
        joules = float(counter[0]["value"][1])
        assert joules > 0
        print("epoch %s: %.1f s, rule %.2f J, counter %.2f J, %+.1f %%" % (
            epoch, durations[epoch], rule[epoch], joules, 100 * (rule[epoch] / joules - 1)))
        assert abs(rule[epoch] - joules) <= ENERGY_TOLERANCE * joules + boundary_j, \
            "epoch %s: rule %.2f J, counter %.2f J (bound 10 %% + %.2f J)" % (epoch, rule[epoch], joules, boundary_j)


def test_rule_energy_per_epoch_agrees_with_the_trainers_within_both_bounds(stack: Stack) -> None:
    """The comparison dashboard's per-epoch energy (the recording rule) and the trainer's own (read from the
    exporter at its edges) differ by no more than the trainer's published bound plus the rule's: the rule's
    series begins and ends up to a scrape and an evaluation from each edge, on a counter lagging by up to the
    exporter's interval plus one tegrastats line."""
    prom = stack.prom
    selector = '{run_id="%s"}' % RUN_ID

    def per_epoch(query: str) -> Dict[str, float]:
        return {s["metric"]["epoch"]: float(s["value"][1]) for s in prom.query(query)}
    rule = per_epoch("last_over_time(run_epoch:edgescope_board_energy_joules:increase_in_epoch%s[30m])" % selector)
    trainer = per_epoch("edgescope_train_epoch_energy_joules" + selector)
    bound = per_epoch("edgescope_train_epoch_energy_bound_joules" + selector)
    assert set(rule) == set(trainer) == set(bound) == {str(e) for e in range(EPOCHS)}
    peak_w = float(prom.query('max_over_time(edgescope_board_power_watts{device="%s"}[30m])' % DEVICE)[0]["value"][1])
    rule_bound = 2 * peak_w * (2 * INTERVAL + 2 * EXPORTER_INTERVAL)
    for epoch in sorted(rule):
        print("epoch %s: rule %.2f J, trainer %.2f ± %.2f J, rule's bound %.2f J" % (
            epoch, rule[epoch], trainer[epoch], bound[epoch], rule_bound))
        assert 0 < bound[epoch] <= 2 * peak_w * 2 * EXPORTER_INTERVAL + 1e-6  # the larger edge power × 2 lags
        assert abs(rule[epoch] - trainer[epoch]) <= bound[epoch] + rule_bound, epoch


def test_gauge_integral_agrees_with_the_counter_over_a_window(stack: Stack) -> None:
    """The integral5m / increase5m rule formulas over a window the data fills
    (the test does not run for 5 minutes; over a window longer than the data,
    avg_over_time x window overstates, as prometheus/README.md says)."""
    prom = stack.prom
    window = int(time.time() - stack.started) - 2
    assert window >= 10
    gauge = prom.query('avg_over_time(edgescope_board_power_watts{device="%s"}[%ds]) * %d'
                       % (DEVICE, window, window))
    counter = prom.query('increase(edgescope_board_energy_joules_total{device="%s"}[%ds])' % (DEVICE, window))
    g, c = float(gauge[0]["value"][1]), float(counter[0]["value"][1])
    print("last %d s: gauge %.2f J, counter %.2f J, %+.1f %%" % (window, g, c, 100 * (g / c - 1)))
    assert c > 0 and abs(g - c) <= ENERGY_TOLERANCE * c, "gauge %.2f J, counter %.2f J" % (g, c)


def test_the_run_on_a_terminal_says_why_and_what_would_change_it(stack: Stack) -> None:
    """What the quick start shows, on this real run read back from Prometheus: the trainer's epoch lines and
    edgescope-report's default text within 120 columns, the diagnosis in a sentence, each what-if with its
    spread."""
    epochs = [line for line in stack.trainer_log.read_text().splitlines() if re.match(r"^epoch \d+/\d+: ", line)]
    assert len(epochs) == EPOCHS and max(len(line) for line in epochs) <= 120, epochs
    done = subprocess.run([sys.executable, "-m", "report.cli", "--prometheus", stack.prom.url, "--run", RUN_ID],
                          env=child_env(), cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert max(len(line) for line in done.stdout.splitlines()) <= 120, done.stdout
    assert re.search(r"^(\w+-bound|mixed bottleneck), E2E [\d.]+ ± [\d.]+ s an epoch \(run {} on {}\)$".format(
        RUN_ID, DEVICE), done.stdout, re.MULTILINE), done.stdout
    said = " ".join(done.stdout.split())
    for what_if in ("the dataset cached", "twice the workers", "compute 2x faster"):
        # the stack's power is a replayed log: a prediction gives its time, never energy from replayed watts
        # what-ifs with the same prediction share one sentence: "with A / B: ..."
        assert re.search(r"with (?:[^:]* / )?{}[^:]*: [\d.]+ ± [\d.]+ s(?! /)".format(what_if), said), said
        assert not re.search(r"with (?:[^:]* / )?{}[^:]*: [^:]* J".format(what_if), said), said
