"""What the stack may query, and what it does query.

* `contract_names()`: every series name docs/metrics.md promises (histograms
  expanded to _bucket/_sum/_count), plus Prometheus' own `up`.
* `rule_names()` / `alert_names()`: what prometheus/rules/*.yml defines.
* `dashboard_queries()`: every PromQL query in grafana/dashboards/*.json:
  panel targets, annotations and template-variable queries.
* `metric_names(expr)`: the series names a PromQL expression selects.
* `substitute(expr, values)`: Grafana's template variables filled in, so a
  dashboard query can be sent to Prometheus as Grafana would send it.
* `documented_metrics()` / `names_on_dashboards()`: which documented series
  no dashboard shows.
* `NOT_IN_LIVE_STACK`: series the integration stack cannot produce (no jtop,
  no nvpmodel, nothing down); test_dashboards proves the queries that use
  them against a real Prometheus scraping synthetic targets instead.

The static tests check names; the integration test runs the queries.
"""
import json
import re
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, NamedTuple, Set, Tuple

import yaml

REPO = Path(__file__).resolve().parents[2]
CONTRACT = REPO / "docs" / "metrics.md"
RULES_DIR = REPO / "prometheus" / "rules"
DASHBOARD_DIR = REPO / "grafana" / "dashboards"

BUILTIN_NAMES = {"up"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

def _contract_table() -> Iterator[Tuple[str, str]]:
    """(name, type) for each name in the first column of docs/metrics.md's tables."""
    for line in CONTRACT.read_text(encoding="utf-8").splitlines():
        cells = line.split("|")
        if len(cells) < 4 or not line.startswith("|"):
            continue
        for name in re.findall(r"`(edgescope_[a-z0-9_]+)`", cells[1]):
            yield name, cells[2].strip()


def documented_metrics() -> Set[str]:
    """The series docs/metrics.md documents (histograms by their base name)."""
    return {name for name, _ in _contract_table()}


def _not_in_live_stack() -> Dict[str, str]:
    return dict(
        [(name, "jtop only; the stack replays tegrastats") for name in (
            "edgescope_board_info", "edgescope_power_mode_info", "edgescope_jetson_clocks_enabled",
            "edgescope_fan_speed_ratio", "edgescope_gpu_memory_bytes")]
        + [(name, "present only while something is down; the stack is healthy") for name in (
            "edgescope_source_down_info", "edgescope_dataset_down_info")]
        + [(name, "edgescope-report --powermode-textfile writes it for node_exporter; the stack runs neither")
           for name in ("edgescope_powermode_epoch_seconds", "edgescope_powermode_epoch_energy_joules",
                        "edgescope_powermode_time_error_ratio", "edgescope_powermode_energy_error_ratio")]
        + [("edgescope_clock_frequency_mode_max_hertz", "needs nvpmodel's status file; the fake board has none"),
           ("edgescope_dataset_disk_info", "absent where the dataset's directory is on no block device "
                                           "(the test's tmp directory may be tmpfs or overlay)")])


# Series the integration stack (tests/stack/test_integration.py) cannot
# produce, and why. Queries using them are proven in test_dashboards.py
# against a real Prometheus scraping synthetic targets that publish them.
NOT_IN_LIVE_STACK = _not_in_live_stack()


def contract_names() -> Set[str]:
    """Every series name a query may select: the documented ones (histograms
    expanded to _bucket/_sum/_count) and `up`."""
    names = set(BUILTIN_NAMES)
    histograms = set()  # type: Set[str]
    for name, kind in _contract_table():
        names.add(name)
        if kind.startswith("histogram"):
            histograms.add(name)
    return names | {name + suffix for name in histograms for suffix in HISTOGRAM_SUFFIXES}


def _rules() -> Iterator[Dict[str, str]]:
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                yield rule


def rule_names() -> Set[str]:
    return {rule["record"] for rule in _rules() if "record" in rule}


def alert_names() -> Set[str]:
    return {rule["alert"] for rule in _rules() if "alert" in rule}


def rule_exprs() -> Dict[str, str]:
    """Recording rule name -> expression."""
    return {rule["record"]: rule["expr"] for rule in _rules() if "record" in rule}


class Query(NamedTuple):
    dashboard: str   # file name
    where: str       # panel title, "annotation ..." or "variable ..."
    expr: str
    unit: str        # the panel's unit ("" for annotations and variables)


def dashboards() -> Dict[str, dict]:
    return {path.name: json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(dashboard: dict) -> Iterator[dict]:
    """All panels, including those nested in rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries() -> List[Query]:
    queries = []
    for name, board in dashboards().items():
        for panel in panels(board):
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
            for target in panel.get("targets", []):
                queries.append(Query(name, panel.get("title", "?"), target["expr"], unit))
        for annotation in board.get("annotations", {}).get("list", []):
            if annotation.get("expr"):
                queries.append(Query(name, "annotation " + annotation["name"], annotation["expr"], ""))
        for variable in board.get("templating", {}).get("list", []):
            query = variable.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query or "")
            match = re.fullmatch(r"label_values\((.*),\s*\w+\)", text.strip())
            if match:
                queries.append(Query(name, "variable " + variable["name"], match.group(1), ""))
    return queries


KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}


def metric_names(expr: str) -> Set[str]:
    """Series names selected by a PromQL expression (functions, labels and keywords excluded)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)           # string literals
    text = re.sub(r"\{[^}]*\}", "", text)                        # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                       # ranges, subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\boffset\s+-?\w+", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def all_values(variables: Iterable[dict]) -> Dict[str, str]:
    """What Grafana sends for "All" of each filter variable that declares its own (allValue)."""
    return {v["name"]: v["allValue"] for v in variables if "allValue" in v}


def substitute(expr: str, values: Dict[str, str]) -> str:
    """Replaces $name and ${name} (longest names first, so $__rate_interval before $__range)."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${%s}" % name, values[name]).replace("$" + name, values[name])
    return expr


def names_on_dashboards(queries: Iterable[Query]) -> Set[str]:
    """Series the queries show, directly or through a recording rule, histograms by their base name."""
    rules = rule_exprs()
    names = set()  # type: Set[str]
    for query in queries:
        for name in metric_names(query.expr):
            names.add(name)
            names |= metric_names(rules.get(name, ""))
    return {base_name(name) for name in names}


def base_name(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name


def needs_synthetic_data(query: Query) -> bool:
    """Whether the query selects a series the integration stack cannot produce."""
    return bool(metric_names(query.expr) & set(NOT_IN_LIVE_STACK))
