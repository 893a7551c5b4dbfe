"""Checks of the Grafana dashboards and the rules' metric names.

Every query may use only names that exist: the metric contract
(docs/metrics.md) and the recording rules; every documented series is on a
dashboard. Every panel has a unit, every rate window is $__rate_interval,
every panel, target, annotation and variable queries the `datasource`
variable (declared in `__inputs` for Grafana's Import page). The
integration test runs every query against real data; the queries of series
it cannot produce (catalog.NOT_IN_LIVE_STACK) run here, against a real
Prometheus scraping synthetic targets that publish them.
"""
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml

from report.configuration import FROM_EPOCHS, KNOB_NAMES
from tests.stack.catalog import (NOT_IN_LIVE_STACK, REPO, Query, all_values, contract_names, dashboard_queries,
                                 dashboards, documented_metrics, metric_names, names_on_dashboards,
                                 needs_synthetic_data, panels, rule_exprs, rule_names, substitute)
from tests.stack.harness import ExpositionServer, Prometheus, Target

KNOWN = contract_names() | rule_names()
QUERIES = dashboard_queries()


def query_id(query: Query) -> str:
    return "%s:%s" % (query.dashboard, query.where)


def test_dashboards_are_what_the_generator_writes() -> None:
    result = subprocess.run([sys.executable, str(REPO / "grafana" / "generate.py"), "--check"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    assert result.returncode == 0, result.stdout


def test_the_three_dashboards_exist() -> None:
    titles = {board["title"] for board in dashboards().values()}
    assert titles == {"edgescope / Compare devices", "edgescope / Training run",
                      "edgescope / Device health"}


@pytest.mark.parametrize("query", QUERIES, ids=query_id)
def test_query_uses_only_known_names(query: Query) -> None:
    names = metric_names(query.expr)
    assert names, "no metric in %r" % query.expr
    unknown = names - KNOWN
    assert not unknown, "%s: %s not in docs/metrics.md nor prometheus/rules" % (query_id(query), unknown)


def test_name_check_catches_a_typo() -> None:
    expr = 'rate(edgescope_board_energy_joule_total{device=~"$device"}[$__rate_interval])'
    assert metric_names(expr) - KNOWN == {"edgescope_board_energy_joule_total"}


VARIABLE_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Documented series that make no sense on a panel, and why. Empty: every
# documented series is on a dashboard.
OFF_DASHBOARD = {}  # type: Dict[str, str]


def test_every_panel_has_a_unit_and_queries_the_datasource_variable() -> None:
    checked = 0
    for name, board in dashboards().items():
        for panel in panels(board):
            if panel["type"] == "row":
                continue
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
            assert unit, "%s: panel %r has no unit" % (name, panel["title"])
            assert panel["datasource"] == VARIABLE_DATASOURCE, (name, panel["title"])
            assert all(t["datasource"] == VARIABLE_DATASOURCE for t in panel["targets"])
            checked += 1
        for item in board["annotations"]["list"] + board["templating"]["list"]:
            if item.get("type") != "datasource":
                assert item["datasource"] == VARIABLE_DATASOURCE, (name, item["name"])
    assert checked >= 60


def test_dashboards_import_anywhere_and_provision_unchanged() -> None:
    """Import asks for DS_PROMETHEUS and writes it into the variable's value; provisioning
    loads the file as is, and Grafana matches the variable's text, the provisioned name."""
    provisioned = yaml.safe_load(
        (REPO / "grafana" / "provisioning" / "datasources" / "edgescope.yml").read_text())["datasources"]
    assert [(d["type"], d["uid"], d["isDefault"]) for d in provisioned] == \
        [("prometheus", "edgescope-prometheus", True)]
    for name, board in dashboards().items():
        assert board["__inputs"] == [{
            "name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource", "pluginId": "prometheus",
            "pluginName": "Prometheus", "description": board["__inputs"][0]["description"]}], name
        variable = board["templating"]["list"][0]
        assert (variable["name"], variable["type"], variable["query"]) == ("datasource", "datasource",
                                                                           "prometheus"), name
        assert variable["current"]["value"] == "${DS_PROMETHEUS}", name
        assert variable["current"]["text"] == provisioned[0]["name"], name
        text = (REPO / "grafana" / "dashboards" / name).read_text()
        assert "edgescope-prometheus" not in text, "%s hard-codes the provisioned uid" % name
        required = {r["id"] for r in board["__requires"] if r["type"] == "panel"}
        assert required == {p["type"] for p in panels(board)}, name
    assert {board["uid"] for board in dashboards().values()} == {
        "edgescope-compare", "edgescope-run", "edgescope-health"}


def test_every_variable_a_query_uses_is_defined() -> None:
    builtin = {"__rate_interval", "__range", "__interval"}
    for name, board in dashboards().items():
        defined = {v["name"] for v in board["templating"]["list"]} | builtin
        for query in dashboard_queries():
            if query.dashboard == name:
                used = set(re.findall(r"\$\{?(\w+)", query.expr))
                assert used <= defined, "%s: %s uses undefined %s" % (name, query.where, used - defined)


def test_panels_fill_the_grid_without_overlapping() -> None:
    for name, board in dashboards().items():
        cells = {}  # type: Dict[Tuple[int, int], str]
        rows = {}  # type: Dict[int, int]   # y -> width of the panels starting there
        ids = [panel["id"] for panel in panels(board)]
        assert len(ids) == len(set(ids)), name
        for panel in panels(board):
            pos = panel["gridPos"]
            assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, (name, panel["title"])
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), (name, panel["title"])
            rows[pos["y"]] = rows.get(pos["y"], 0) + pos["w"]
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, "%s: %r overlaps %r" % (name, panel["title"], cells[(x, y)])
                    cells[(x, y)] = panel["title"]
        gaps = {y: width for y, width in rows.items() if width != 24}
        assert not gaps, "%s: rows not filled to 24 columns (y: width): %s" % (name, gaps)


def test_every_documented_metric_is_on_a_dashboard() -> None:
    missing = documented_metrics() - names_on_dashboards(dashboard_queries()) - set(OFF_DASHBOARD)
    assert not missing, "documented in docs/metrics.md, on no dashboard: %s" % sorted(missing)


def test_coverage_check_catches_a_dashboard_removed() -> None:
    without_health = [q for q in dashboard_queries() if q.dashboard != "device-health.json"]
    missing = documented_metrics() - names_on_dashboards(without_health)
    assert {"edgescope_cooling_device_state", "edgescope_dataset_files"} <= missing


def test_comparison_filters_by_board_type_and_every_knob() -> None:
    """The report's definition of a configuration (report.configuration.KNOBS) is the dashboard's filters."""
    variables = {v["name"]: v for v in dashboards()["compare-devices.json"]["templating"]["list"]}
    filters = ["device_type"] + [name for name in KNOB_NAMES if name not in FROM_EPOCHS]
    for name in filters + ["run"]:
        assert variables[name]["multi"], name
        assert "edgescope_train_run_info" in variables[name]["definition"], name
    # each narrowed by those before it, and the runs by all of them
    assert 'device_type=~"$device_type"' in variables["model"]["definition"]
    for name in filters:
        assert '%s=~"$%s"' % (name, name) in variables["run"]["definition"]
    for name in ("profile_pass", "page_cache", "plan", "run_id"):  # never a knob
        assert name not in variables
    # the device comes last: its "All" (Grafana's, the options joined) is the boards every other filter leaves,
    # and the board panels filter on it
    assert "allValue" not in variables["device"]
    for name in filters:
        if name != "device":
            assert '%s=~"$%s"' % (name, name) in variables["device"]["definition"]


def test_all_of_a_knob_keeps_the_runs_without_it(synthetic_prometheus: Tuple[Prometheus, float]) -> None:
    """The synthetic run has a model and no other knob (no power mode off a Jetson): "All" of every filter still
    finds it, a value of one filter narrows to the runs that have it."""
    prom, _ = synthetic_prometheus
    variables = {v["name"]: v for v in dashboards()["compare-devices.json"]["templating"]["list"]}
    series = re.fullmatch(r"label_values\((.*), run_id\)", variables["run"]["definition"]).group(1)

    def runs(values: Dict[str, str]) -> List[str]:
        return sorted(r["metric"]["run_id"] for r in prom.query(substitute(series, values)))
    everything = dict(grafana_values("4s", "60s"), **all_values(variables.values()))
    assert runs(everything) == [SYNTHETIC_RUN]
    assert runs(dict(everything, model="resnet18")) == [SYNTHETIC_RUN]
    assert runs(dict(everything, workers="4")) == []


def test_comparison_rows_and_runs_open_the_run_dashboard() -> None:
    boards = dashboards()
    run_board = boards["training-run.json"]
    run_variables = {v["name"] for v in run_board["templating"]["list"]}
    linked = 0
    for panel in panels(boards["compare-devices.json"]):
        per_run = any('run_id=~"$run"' in t["expr"] for t in panel["targets"])
        links = panel["fieldConfig"]["defaults"].get("links", [])
        if not per_run:
            continue
        assert len(links) == 1, panel["title"]
        url = urlsplit(links[0]["url"])
        assert url.path == "/d/%s/edgescope-training-run" % run_board["uid"], links[0]["url"]
        assert url.query.startswith("${__url_time_range}&"), links[0]["url"]
        params = dict(parse_qsl(url.query.split("&", 1)[1]))
        assert {k[len("var-"):] for k in params} == run_variables, params
        field = "__data.fields" if panel["type"] == "table" else "__field.labels"
        assert params["var-run"] == "${%s.run_id}" % field and params["var-device"] == "${%s.device}" % field
        linked += 1
    assert linked >= 10


def test_rate_windows_are_rate_interval() -> None:
    for query in QUERIES:
        for func, window in re.findall(r"\b(rate|irate|increase)\([^\[]*\[([^\]]+)\]", query.expr):
            assert window == "$__rate_interval", "%s uses %s over [%s]" % (
                query_id(query), func, window)


def test_heatmaps_read_histogram_buckets() -> None:
    heatmaps = [p for p in panels(dashboards()["training-run.json"]) if p["type"] == "heatmap"]
    assert len(heatmaps) >= 2
    for panel in heatmaps:
        target = panel["targets"][0]
        assert target["format"] == "heatmap" and "_bucket" in target["expr"], panel["title"]
        assert panel["options"]["calculate"] is False


@pytest.mark.parametrize("record", sorted(rule_exprs()))
def test_recording_rules_use_only_known_names(record: str) -> None:
    unknown = metric_names(rule_exprs()[record]) - KNOWN
    assert not unknown, "%s uses %s" % (record, unknown)


def test_every_query_parses_with_variables_filled_in(tmp_path: Path) -> None:
    """promtool parses each query as Grafana would send it (as a recording rule of a scratch file)."""
    values = dict(grafana_values("1m", "3h"), device="nano-01", run="r1")
    rules = [{"record": "dashboard:query_%d:check" % i, "expr": substitute(q.expr, values)}
             for i, q in enumerate(QUERIES)]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(["promtool", "check", "rules", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True)
    assert result.returncode == 0, result.stdout


# -- queries of series the integration stack cannot produce, against synthetic targets ----------

SYNTHETIC_DEVICE = "syn-orin"
SYNTHETIC_RUN = "syn-run"
SCRAPE = 1.0


def exposition(lines: Callable[[int], List[str]]) -> Callable[[], str]:
    """Prometheus text of `lines(n)`, n counting the scrapes (so counters and histograms grow)."""
    scrapes = [0]

    def render() -> str:
        scrapes[0] += 1
        return "\n".join(lines(scrapes[0])) + "\n"
    return render


def histogram(name: str, n: int, seconds: float) -> List[str]:
    """n observations of `seconds` each (between the 0.01 and 0.1 bounds)."""
    labels = 'run_id="%s"' % SYNTHETIC_RUN
    return ["# TYPE %s histogram" % name,
            '%s_bucket{%s,le="0.01"} 0' % (name, labels),
            '%s_bucket{%s,le="0.1"} %d' % (name, labels, n),
            '%s_bucket{%s,le="+Inf"} %d' % (name, labels, n),
            "%s_sum{%s} %g" % (name, labels, n * seconds),
            "%s_count{%s} %d" % (name, labels, n)]


def trainer_lines(n: int) -> List[str]:
    """A run whose batches take 50 ms: 20 ms fetch stall, 12 ms of it storage, 8 ms preprocessing."""
    epoch = 'run_id="%s",epoch="0"' % SYNTHETIC_RUN
    return (histogram("edgescope_train_batch_seconds", n, 0.05)
            + histogram("edgescope_train_fetch_stall_seconds", n, 0.02)
            + histogram("edgescope_train_fetch_stall_storage_seconds", n, 0.012)
            + histogram("edgescope_train_fetch_stall_preprocess_seconds", n, 0.008)
            + ["edgescope_train_epoch_fetch_stall_storage_seconds{%s} 1.2" % epoch,
               "edgescope_train_epoch_fetch_stall_preprocess_seconds{%s} 0.8" % epoch,
               "edgescope_train_epoch_read_seconds{%s} 3.5" % epoch,
               "edgescope_train_epoch_preprocess_seconds{%s} 2.5" % epoch,
               "edgescope_train_epoch_energy_joules{%s} 55" % epoch,
               "edgescope_train_epoch_energy_bound_joules{%s} 2.2" % epoch,
               "edgescope_train_epoch_average_power_watts{%s} 11" % epoch,
               'edgescope_train_run_info{run_id="%s",model="resnet18"} 1' % SYNTHETIC_RUN])


def exporter_lines(n: int) -> List[str]:
    """A Jetson read through jtop, with nvpmodel's status, a source down and a dataset on a disk."""
    return ['edgescope_board_info{model="NVIDIA Jetson AGX Orin",module="P3701-0005",l4t="36.3.0",'
            'jetpack="6.0"} 1',
            'edgescope_power_mode_info{mode="MAXN"} 1',
            "edgescope_jetson_clocks_enabled %d" % (n % 2),
            'edgescope_fan_speed_ratio{fan="pwmfan0"} 0.4',
            "edgescope_gpu_memory_bytes 1.2e9",
            'edgescope_clock_frequency_min_hertz{clock="gpu"} 3.06e8',
            'edgescope_clock_frequency_policy_max_hertz{clock="gpu"} 9.18e8',
            'edgescope_clock_frequency_mode_max_hertz{clock="gpu"} 1.3005e9',
            'edgescope_source_down_info{source="nvml",reason="library not found"} 1',
            'edgescope_dataset_down_info{dataset="/data/b",reason="dataset path does not exist"} 1',
            'edgescope_dataset_disk_info{dataset="/data/a",disk="nvme0n1"} 1']


def powermode_lines(n: int) -> List[str]:
    """edgescope-report --powermode-textfile's file for the synthetic board: a measured mode and a predicted one."""
    workload = 'device="%s",storage="nvme",model="resnet18",mode_cpu_cores="8"' % SYNTHETIC_DEVICE
    measured = '%s,mode="MAXN",kind="measured"' % workload
    predicted = '%s,mode="15W",kind="predicted"' % workload
    return ["edgescope_powermode_epoch_seconds{%s} 12.5" % measured,
            "edgescope_powermode_epoch_energy_joules{%s} 250" % measured,
            "edgescope_powermode_epoch_seconds{%s} 15.1" % predicted,
            "edgescope_powermode_epoch_energy_joules{%s} 190" % predicted,
            "edgescope_powermode_time_error_ratio{%s} 0.04" % predicted,
            "edgescope_powermode_energy_error_ratio{%s} 0.07" % predicted]


def grafana_values(rate_interval: str, range_: str) -> Dict[str, str]:
    """Grafana's variables as it fills them in for the synthetic board: "All" of the comparison's other filters."""
    filters = all_values(dashboards()["compare-devices.json"]["templating"]["list"])
    return dict(filters, device=SYNTHETIC_DEVICE, run=SYNTHETIC_RUN, device_type="agx-orin", storage="nvme",
                model="resnet18", __rate_interval=rate_interval, __range=range_, __interval="1s")


SYNTHETIC_QUERIES = [q for q in dashboard_queries() if needs_synthetic_data(q)]


@pytest.fixture(scope="module")
def synthetic_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Prometheus, float]]:
    """A real Prometheus scraping the synthetic board; and the time before its first scrape."""
    with ExpositionServer(exposition(exporter_lines)) as exporter, \
            ExpositionServer(exposition(trainer_lines)) as trainer, \
            ExpositionServer(exposition(powermode_lines)) as powermode, \
            Prometheus(tmp_path_factory.mktemp("synthetic"), scrape_interval="1s", evaluation_interval="1s",
                       static_targets={"edgescope-powermode": "127.0.0.1:%d" % powermode.port}) as prom:
        prom.set_targets([Target(SYNTHETIC_DEVICE, "agx-orin", "nvme", exporter_port=exporter.port,
                                 trainer_port=trainer.port)])
        started = time.time()
        # a rate over 4 s needs at least two scrapes in its window: wait for six
        prom.wait_until(lambda: prom.query('count_over_time(up{device="%s"}[1m]) >= 6' % SYNTHETIC_DEVICE),
                        timeout=60, what="six scrapes of both synthetic targets")
        yield prom, started


def test_synthetic_targets_cover_every_series_the_stack_cannot_produce() -> None:
    published = {line.split("{")[0].split(" ")[0] for line in exporter_lines(1) + trainer_lines(1)
                 + powermode_lines(1) if not line.startswith("#")}
    assert set(NOT_IN_LIVE_STACK) <= published
    assert len(SYNTHETIC_QUERIES) >= 20


@pytest.mark.parametrize("query", SYNTHETIC_QUERIES, ids=query_id)
def test_query_returns_data_from_synthetic_targets(synthetic_prometheus: Tuple[Prometheus, float], query: Query) -> None:
    prom, started = synthetic_prometheus
    expr = substitute(query.expr, grafana_values("4s", "%ds" % (time.time() - started + 60)))
    assert "$" not in expr, expr
    result = prom.query_range(expr, start=started, end=time.time(), step=SCRAPE)
    values = [v for series in result for _, v in series["values"] if v not in ("NaN", "+Inf", "-Inf")]
    assert values, "%s / %s: no data from %s" % (query.dashboard, query.where, expr)


def test_stall_split_reads_back_as_published(synthetic_prometheus: Tuple[Prometheus, float]) -> None:
    """The storage/preprocessing shares of batch time are the synthetic run's 12 / 50 and 8 / 50 ms."""
    prom, started = synthetic_prometheus
    values = grafana_values("4s", "60s")
    for panel in panels(dashboards()["training-run.json"]):
        if panel["title"].startswith("Fetch stall: storage vs preprocessing"):
            shares = [float(prom.query(substitute(t["expr"], values))[0]["value"][1]) for t in panel["targets"]]
            assert shares == pytest.approx([0.24, 0.16], rel=1e-6)
            return
    raise AssertionError("no stall split panel on the run dashboard")


def test_live_bottleneck_reads_the_synthetic_runs_class(synthetic_prometheus: Tuple[Prometheus, float]) -> None:
    """The synthetic run stalls 20 of every 50 ms, 12 of them storage (60 %): `mixed`, code 2 on the timeline."""
    prom, started = synthetic_prometheus
    values = grafana_values("4s", "60s")
    prom.wait_until(lambda: prom.query("run:edgescope_train_bottleneck:info"), timeout=90,
                    what="the bottleneck rule over a minute of scrapes")
    for panel in panels(dashboards()["training-run.json"]):
        if panel["title"].startswith("Bottleneck (live"):
            result = prom.query(substitute(panel["targets"][0]["expr"], values))
            assert [float(r["value"][1]) for r in result] == [2.0]
            mapping = panel["fieldConfig"]["defaults"]["mappings"][0]["options"]
            assert mapping["2"]["text"] == "mixed"
            assert [r["metric"]["bottleneck"] for r in prom.query("run:edgescope_train_bottleneck:info")] == ["mixed"]
            return
    raise AssertionError("no live bottleneck panel on the run dashboard")
