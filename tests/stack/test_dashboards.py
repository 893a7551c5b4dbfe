"""Static checks of the Grafana dashboards and the rules' metric names.

Every query may use only names that exist: the metric contract
(docs/metrics.md) and the recording rules. Every panel has a unit, every
rate window is $__rate_interval, every panel uses the provisioned datasource.
The integration test then runs every query against real data.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.stack.catalog import (REPO, Query, contract_names, dashboard_queries, dashboards,
                                 metric_names, panels, rule_exprs, rule_names, substitute)

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


def test_every_panel_has_a_unit_and_the_provisioned_datasource() -> None:
    datasource = yaml.safe_load(
        (REPO / "grafana" / "provisioning" / "datasources" / "edgescope.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    checked = 0
    for name, board in dashboards().items():
        for panel in panels(board):
            if panel["type"] == "row":
                continue
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
            assert unit, "%s: panel %r has no unit" % (name, panel["title"])
            assert panel["datasource"]["uid"] == uid, (name, panel["title"])
            assert all(t["datasource"]["uid"] == uid for t in panel["targets"])
            checked += 1
    assert checked >= 30


def test_rate_windows_are_rate_interval() -> None:
    for query in QUERIES:
        for func, window in re.findall(r"\b(rate|irate|increase)\([^\[]*\[([^\]]+)\]", query.expr):
            assert window == "$__rate_interval", "%s uses %s over [%s]" % (
                query_id(query), func, window)


def test_compare_devices_has_device_multiselect_and_run_variables() -> None:
    board = dashboards()["compare-devices.json"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["device"]["multi"] and variables["run"]["multi"]


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
    values = {"device": "nano-01", "run": "r1", "__rate_interval": "1m", "__range": "3h",
              "__interval": "15s"}
    rules = [{"record": "dashboard:query_%d:check" % i, "expr": substitute(q.expr, values)}
             for i, q in enumerate(QUERIES)]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(["promtool", "check", "rules", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True)
    assert result.returncode == 0, result.stdout
