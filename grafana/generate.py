"""Writes the edgescope Grafana dashboards (grafana/dashboards/*.json).

The dashboards are generated so that every panel is built the same way (the
`datasource` variable, a unit, a legend naming the device) and a change
of convention is one edit here.

They are written to import into any Grafana: every panel, target, annotation
and variable queries the `datasource` variable (type datasource, Prometheus).
Its current value is `${DS_PROMETHEUS}`, declared in `__inputs`, so the
Import page asks for a Prometheus and writes its uid there; its current text
is the name of the provisioned datasource (grafana/provisioning/datasources/
edgescope.yml, uid `edgescope-prometheus`), which Grafana matches when
provisioning loads the files unchanged. (Grafana 10.4 matches a datasource
variable by text only: after an import it starts on the first Prometheus
unless one has that name; the dropdown switches every panel.)

The JSON files are committed, and tests/stack checks that they are what
this script writes:

    python3 grafana/generate.py          # rewrite the JSON files
    python3 grafana/generate.py --check  # exit 1 if they are out of date

Queries may use only names from docs/metrics.md and prometheus/rules/
(checked by tests/stack). Rate queries use $__rate_interval.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout
from report import configuration  # noqa: E402
from trainer.mode import MODE_LABELS  # noqa: E402

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PROVISIONED_DATASOURCE_NAME = "edgescope Prometheus"
DATASOURCE_INPUT = {
    "name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
    "pluginId": "prometheus", "pluginName": "Prometheus",
    "description": "The Prometheus (or VictoriaMetrics) that scrapes the edgescope exporters and trainers.",
}
DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
RUN_UID = "edgescope-run"
RUN_DASHBOARD = "/d/%s/edgescope-training-run" % RUN_UID

DEV = 'device=~"$device"'
RUN = 'device=~"$device", run_id=~"$run"'
EXPORTER_JOB = 'job="edgescope-exporter"'
# The comparison's filters, each narrowed by the ones before it: (label and variable name, title): the board
# type, every knob of a configuration (report/configuration.py: the report's comparison rows use the same),
# and last the device, so that its "All" is the boards the other filters leave. A knob the report reads from the
# epochs (configuration.FROM_EPOCHS) is no run_info label to filter on.
FILTERS = ((("device_type", "Board type"),)
           + tuple(k for k in configuration.KNOBS if k[0] != "device" and k[0] not in configuration.FROM_EPOCHS)
           + (("device", "Device"),))
# "All" of a knob: any value, and none (a knob a run does not have: no power mode off a Jetson); Grafana's
# default, the options joined, would drop those runs. Every run has a device: there "All" stays Grafana's,
# the devices the filters before it leave, so the board panels (DEV) show only those.
ANY_VALUE = ".*"


def matchers(names: Sequence[str]) -> str:
    """``name=~"$name"`` for each label name: a series filtered by the variables of the same names."""
    return ", ".join('%s=~"$%s"' % (n, n) for n in names)


RUN_FILTERS = matchers([name for name, _ in FILTERS if name != "device"])  # the device has its own variable
# edgescope-report --powermode-textfile's series: labelled with the workload's knobs and the device (no board type:
# the report writes them, no board's target), and a mode of their own, not the run's
WORKLOAD_FILTERS = matchers([name for name, _ in FILTERS if name not in ("device_type", "power_mode") + MODE_LABELS])

Target = Tuple[str, str]  # (PromQL expression, legend format)
Link = Dict[str, str]


def rate(metric: str, selector: str) -> str:
    return "rate(%s{%s}[$__rate_interval])" % (metric, selector)


def bucket_increase(histogram: str) -> str:
    return "sum by (le) (increase(%s_bucket{%s}[$__rate_interval]))" % (histogram, RUN)


def quantile(q: float, histogram: str) -> str:
    return "histogram_quantile(%s, sum by (device, run_id, le) (%s))" % (
        q, rate(histogram + "_bucket", RUN))


def share_of_batch_time(histogram: str) -> str:
    return "%s / %s" % (rate(histogram + "_sum", RUN), rate("edgescope_train_batch_seconds_sum", RUN))


def run_link(device: str, run_id: str) -> Link:
    """A data link to the run dashboard: same time range and datasource, that device and run."""
    return {"title": "Open run %s on %s" % (run_id, device),
            "url": "%s?${__url_time_range}&var-datasource=${datasource}&var-device=%s&var-run=%s"
                   % (RUN_DASHBOARD, device, run_id)}


SERIES_RUN_LINK = run_link("${__field.labels.device}", "${__field.labels.run_id}")
ROW_RUN_LINK = run_link("${__data.fields.device}", "${__data.fields.run_id}")


def value_text(texts: Dict[int, Tuple[str, str]]) -> List[Dict[str, Any]]:
    """Grafana value mappings: number -> (text, colour)."""
    return [{"type": "value", "options": {str(value): {"text": text, "color": color, "index": i}
                                          for i, (value, (text, color)) in enumerate(sorted(texts.items()))}}]


UP_DOWN = value_text({0: ("down", "red"), 1: ("up", "green")})
ON_OFF = value_text({0: ("off", "text"), 1: ("on", "green")})
BOTTLENECK_CODES = {0: ("compute", "green"), 1: ("preprocessing", "orange"), 2: ("mixed", "yellow"),
                    3: ("storage", "red")}
BOTTLENECKS = value_text(BOTTLENECK_CODES)


class Board:
    """Collects panels and lays them out left to right, top to bottom."""

    def __init__(self) -> None:
        self.panels = []  # type: List[Dict[str, Any]]
        self.x = 0
        self.y = 0
        self.row_height = 0

    def add(self, title: str, unit: str, targets: List[Target], kind: str = "timeseries",
            width: int = 12, height: int = 8, description: str = "",
            options: Optional[Dict[str, Any]] = None,
            field_config: Optional[Dict[str, Any]] = None,
            overrides: Optional[List[Dict[str, Any]]] = None,
            transformations: Optional[List[Dict[str, Any]]] = None,
            links: Optional[List[Link]] = None) -> None:
        if self.x + width > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        instant = kind in ("bargauge", "table", "stat")
        defaults = dict({"unit": unit}, **(field_config or {}))
        if links:
            defaults["links"] = links
        panel = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DATASOURCE,
            "gridPos": {"x": self.x, "y": self.y, "w": width, "h": height},
            "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
            "options": options or {},
            "targets": [self._target(i, expr, legend, kind, instant)
                        for i, (expr, legend) in enumerate(targets)],
        }
        if transformations:
            panel["transformations"] = transformations
        self.panels.append(panel)
        self.x += width
        self.row_height = max(self.row_height, height)

    def states(self, title: str, targets: List[Target], mappings: List[Dict[str, Any]],
               width: int = 12, height: int = 8, description: str = "") -> None:
        """A state timeline: one lane per series, its value shown as the mapped text."""
        self.add(title, "none", targets, kind="state-timeline", width=width, height=height,
                 description=description, field_config={"mappings": mappings},
                 options={"showValue": "auto", "mergeValues": True, "rowHeight": 0.8,
                          "legend": {"showLegend": False}})

    @staticmethod
    def _target(index: int, expr: str, legend: str, kind: str, instant: bool) -> Dict[str, Any]:
        target = {"refId": chr(ord("A") + index), "datasource": DATASOURCE, "expr": expr,
                  "legendFormat": legend, "instant": instant, "range": not instant}
        if kind == "heatmap":
            target["format"] = "heatmap"
        elif kind == "table":
            target["format"] = "table"
        return target


DATASOURCE_VAR = {
    "name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
    "current": {"selected": True, "text": PROVISIONED_DATASOURCE_NAME,
                "value": "${%s}" % DATASOURCE_INPUT["name"]},
    "options": [], "refresh": 1, "regex": "", "hide": 0, "multi": False, "includeAll": False,
}


def variable(name: str, label: str, query: str, multi: bool) -> Dict[str, Any]:
    return {
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
        "query": {"query": query, "refId": name}, "definition": query,
        "refresh": 2, "sort": 1, "multi": multi, "includeAll": multi,
        "current": {}, "options": [],
    }


DEVICE_VAR = variable("device", "Device", 'label_values(up{%s}, device)' % EXPORTER_JOB, True)


def run_variable(multi: bool, selector: str = DEV) -> Dict[str, Any]:
    return variable("run", "Run", 'label_values(edgescope_train_run_info{%s}, run_id)' % selector, multi)


def run_filter_variables() -> List[Dict[str, Any]]:
    """Comparison filters, each narrowed by the ones before it: board type, then the knobs."""
    variables = []
    for i, (name, label) in enumerate(FILTERS):
        before = matchers([n for n, _ in FILTERS[:i]])
        series = "edgescope_train_run_info" + ("{%s}" % before if before else "")
        found = variable(name, label, "label_values(%s, %s)" % (series, name), True)
        variables.append(found if name == "device" else dict(found, allValue=ANY_VALUE))
    return variables


def epoch_annotation(name: str, metric: str, color: str, title: str) -> Dict[str, Any]:
    return {
        "name": name, "datasource": DATASOURCE, "enable": True, "iconColor": color,
        "expr": "%s{%s} * 1000" % (metric, RUN),
        "useValueForTime": True, "step": "15s",
        "titleFormat": title, "textFormat": "{{device}} run {{run_id}}",
    }


EPOCH_ANNOTATIONS = [
    epoch_annotation("Epoch ends", "edgescope_train_epoch_end_timestamp_seconds", "purple",
                     "epoch {{epoch}} done"),
    epoch_annotation("Epoch starts", "edgescope_train_epoch_start_timestamp_seconds", "blue",
                     "epoch {{epoch}} starts"),
]


def requirements(panels: List[Dict[str, Any]]) -> List[Dict[str, str]]:
    """`__requires` as a grafana.com export lists it: Grafana, the datasource plugin, the panel types."""
    required = [{"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.4.0"},
                {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"}]
    return required + [{"type": "panel", "id": kind, "name": kind, "version": ""}
                       for kind in sorted({panel["type"] for panel in panels})]


def dashboard(uid: str, title: str, description: str, board: Board,
              variables: List[Dict[str, Any]], annotations: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {
        "__inputs": [DATASOURCE_INPUT],
        "__requires": requirements(board.panels),
        "uid": uid, "title": title, "description": description,
        "tags": ["edgescope"], "editable": True, "schemaVersion": 39,
        "time": {"from": "now-3h", "to": "now"}, "refresh": "30s",
        "timezone": "", "graphTooltip": 1,
        "templating": {"list": [DATASOURCE_VAR] + variables},
        "annotations": {"list": annotations},
        "links": [{"type": "dashboards", "tags": ["edgescope"], "asDropdown": False,
                   "includeVars": True, "keepTime": True, "title": "edgescope"}],
        "panels": board.panels,
    }


BARS = {"displayMode": "basic", "orientation": "horizontal", "showUnfilled": True,
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
EPOCH_LEGEND = "{{device}} {{run_id}} epoch {{epoch}}"
RUN_LEGEND = "{{device}} {{run_id}}"

Column = Tuple[str, str, str]  # (title, unit, per-epoch series)


def epoch_table(b: Board, title: str, columns: List[Column], description: str = "") -> None:
    """One row per device, run and epoch, the columns side by side; a row opens its run."""
    targets = [("sum by (device, run_id, epoch) (last_over_time(%s{%s}[$__range]))" % (metric, RUN), "")
               for _, _, metric in columns]
    names = {"Value #%s" % chr(ord("A") + i): name for i, (name, _, _) in enumerate(columns)}
    overrides = [{"matcher": {"id": "byName", "options": name},
                  "properties": [{"id": "unit", "value": unit}]} for name, unit, _ in columns]
    b.add(title, "s", targets, kind="table", width=24, height=9, description=description,
          overrides=overrides, links=[ROW_RUN_LINK],
          transformations=[{"id": "merge", "options": {}},
                           {"id": "organize", "options": {"excludeByName": {"Time": True},
                                                          "renameByName": names}}],
          options={"sortBy": [{"displayName": "epoch", "desc": False}]})


def board_table(b: Board) -> None:
    """One row per board: what decides whether two runs are comparable, and what jtop shows first."""
    hidden = {"Time": True, "__name__": True, "job": True, "instance": True,
              "Value #A": True, "Value #B": True, "Value #D": True, "Value #E": True}
    b.add("Board", "none",
          [("edgescope_board_info{%s}" % DEV, ""),
           ("edgescope_power_mode_info{%s}" % DEV, ""),
           ("edgescope_jetson_clocks_enabled{%s}" % DEV, ""),
           ("edgescope_power_source_info{%s}" % DEV, ""),
           ("edgescope_exporter_build_info{%s}" % DEV, "")],
          kind="table", width=24, height=5,
          description="Board and JetPack (jtop), power mode, jetson_clocks, where power readings come from "
                      "(replay = a recorded log, not the board; fallback_from = jtop when its versions disagree).",
          overrides=[{"matcher": {"id": "byName", "options": "jetson_clocks"},
                      "properties": [{"id": "mappings", "value": ON_OFF}]}],
          transformations=[{"id": "merge", "options": {}},
                           {"id": "organize", "options": {
                               "excludeByName": hidden,
                               "renameByName": {"Value #C": "jetson_clocks", "source": "power source",
                                                "version": "exporter", "python": "exporter python"}}}])


def board_state(b: Board) -> None:
    """The board table, and power mode, jetson_clocks, load and fan over time."""
    board_table(b)
    b.states("Power mode and jetson_clocks",
             [("edgescope_power_mode_info{%s}" % DEV, "{{device}} mode {{mode}}"),
              ("edgescope_jetson_clocks_enabled{%s}" % DEV, "{{device}} jetson_clocks")], ON_OFF,
             description="One lane per power mode the board was in: on while it was the mode.")
    b.add("CPU, EMC and GPU load", "percentunit",
          [("avg by (device) (edgescope_cpu_utilisation_ratio{%s})" % DEV, "{{device}} CPU (mean of cores)"),
           ("max by (device) (edgescope_cpu_utilisation_ratio{%s})" % DEV, "{{device}} CPU (busiest core)"),
           ("edgescope_emc_utilisation_ratio{%s}" % DEV, "{{device}} EMC"),
           ("edgescope_gpu_utilisation_ratio{%s}" % DEV, "{{device}} GPU")],
          width=8, field_config={"min": 0, "max": 1})
    b.add("Fan", "percentunit", [("edgescope_fan_speed_ratio{%s}" % DEV, "{{device}} {{fan}}")], width=4,
          field_config={"min": 0, "max": 1}, description="PWM duty (jtop).")


def power_mode_table(b: Board) -> None:
    """Per device and workload, each power mode it was measured in beside those predicted for it (the report's
    power_mode=M what-if, from edgescope-report --powermode-textfile through node_exporter)."""
    columns = [("epoch time", "s", "edgescope_powermode_epoch_seconds"),
               ("time ±", "percentunit", "edgescope_powermode_time_error_ratio"),
               ("energy per epoch", "joule", "edgescope_powermode_epoch_energy_joules"),
               ("energy ±", "percentunit", "edgescope_powermode_energy_error_ratio")]
    names = {"Value #%s" % chr(ord("A") + i): name for i, (name, _, _) in enumerate(columns)}
    order = ["device", "model", "dataset", "mode", "kind"] + list(names) + ["extrapolated"]
    b.add("Power modes: measured and predicted", "s",
          [("%s{%s}" % (metric, WORKLOAD_FILTERS), "") for _, _, metric in columns],
          kind="table", width=24, height=9,
          description="Per device and workload (its knobs), each power mode it was measured in (kind measured: the "
                      "mean epoch over its runs' kept epochs) and each mode edgescope-report's power_mode=M what-if "
                      "predicted for it (kind predicted), as of the report's last run with --powermode-textfile "
                      "(served by node_exporter's textfile collector). The power mode's filters (power_mode, "
                      "mode_*) do not apply: it lists every mode. Predicted modes are hollow: never measured "
                      "and never recommended; measure one before acting on it. ±: the prediction's bar, the largest "
                      "of its leave-one-mode-out errors over the measured modes (empty: none could be made); "
                      "extrapolated: its inputs outside the measured modes' range. Predicted energy rests on a "
                      "power model checked only against a fake board's clock-driven power, never a board's "
                      "measured power (docs/power-modes.md).",
          overrides=[{"matcher": {"id": "byName", "options": name},
                      "properties": [{"id": "unit", "value": unit}]} for name, unit, _ in columns],
          transformations=[{"id": "merge", "options": {}},
                           {"id": "organize", "options": {
                               "excludeByName": {"Time": True, "__name__": True, "job": True, "instance": True},
                               "indexByName": {name: i for i, name in enumerate(order)},
                               "renameByName": names}}],
          options={"sortBy": [{"displayName": "device", "desc": False}]})


def compare_devices() -> Dict[str, Any]:
    b = Board()
    b.add("Runs", "none", [("edgescope_train_run_info{%s}" % RUN, "")], kind="table", width=24, height=6,
          description="Each run's configuration and context labels. Click a row for its run.",
          links=[ROW_RUN_LINK],
          transformations=[{"id": "organize", "options": {"excludeByName": {
              "Time": True, "__name__": True, "job": True, "instance": True, "Value": True}}}])
    board_table(b)
    epoch_table(b, "Per epoch, side by side", [
        ("E2E", "s", "edgescope_train_epoch_duration_seconds"),
        ("fetch stall", "s", "edgescope_train_epoch_fetch_stall_seconds"),
        ("compute", "s", "edgescope_train_epoch_compute_seconds"),
        ("samples", "none", "edgescope_train_epoch_samples"),
        ("energy", "joule", "run_epoch:edgescope_board_energy_joules:increase_in_epoch"),
        ("energy (trainer)", "joule", "edgescope_train_epoch_energy_joules"),
        ("± bound (trainer)", "joule", "edgescope_train_epoch_energy_bound_joules"),
        ("mean power (trainer)", "watt", "edgescope_train_epoch_average_power_watts"),
        ("power replayed (trainer)", "none", "edgescope_train_epoch_power_replayed")],
        description="energy: the exporter's counter over the epoch (recording rule); energy (trainer): "
                    "read by the trainer at the epoch's edges (absent where unmeasured), ± bound: how far it can be "
                    "off from how it was read; power replayed 1: a recorded power log played back, not measured. "
                    "Click a row for its run.")
    power_mode_table(b)
    per_epoch = [
        ("End-to-end time per epoch", "s", "edgescope_train_epoch_duration_seconds"),
        ("Fetch stall per epoch", "s", "edgescope_train_epoch_fetch_stall_seconds"),
        ("Compute per epoch", "s", "edgescope_train_epoch_compute_seconds"),
    ]
    for title, unit, metric in per_epoch:
        b.add(title, unit, [("last_over_time(%s{%s}[$__range])" % (metric, RUN), EPOCH_LEGEND)],
              kind="bargauge", width=8, height=10, options=BARS, links=[SERIES_RUN_LINK])
    b.add("Energy per epoch", "joule",
          [("last_over_time(run_epoch:edgescope_board_energy_joules:increase_in_epoch{%s}[$__range])"
            % RUN, EPOCH_LEGEND)],
          kind="bargauge", width=8, height=10, options=BARS, links=[SERIES_RUN_LINK],
          description="The board energy counter's increase inside the epoch (recording rule "
                      "run_epoch:edgescope_board_energy_joules:increase_in_epoch; gaps between epochs count in none).")
    b.add("Average board power while training", "watt",
          [("avg by (device, run_id) (avg_over_time("
            "run_epoch:edgescope_board_power_watts:in_epoch{%s}[$__range]))" % RUN, RUN_LEGEND)],
          kind="bargauge", width=8, height=10, options=BARS, links=[SERIES_RUN_LINK])
    b.add("Samples per joule", "suffix: samples/J",
          [("avg_over_time(run:edgescope_train_samples_per_joule:rate1m{%s}[$__range])" % RUN,
            RUN_LEGEND)],
          kind="bargauge", width=8, height=10, options=BARS, links=[SERIES_RUN_LINK])
    b.add("Fetch stall share of batch time", "percentunit",
          [(share_of_batch_time("edgescope_train_fetch_stall_seconds"), RUN_LEGEND)],
          links=[SERIES_RUN_LINK])
    b.add("Throughput", "suffix: samples/s",
          [(rate("edgescope_train_samples_total", RUN), RUN_LEGEND)], links=[SERIES_RUN_LINK])
    b.add("Read IOPS (r/s)", "iops",
          [(rate("edgescope_disk_reads_completed_total", DEV), "{{device}} {{disk}}")], width=8)
    b.add("Read throughput", "Bps",
          [(rate("edgescope_disk_read_bytes_total", DEV), "{{device}} {{disk}}")], width=8)
    b.add("Dataset in page cache", "percentunit",
          [("edgescope_dataset_page_cache_ratio{%s}" % DEV, "{{device}} {{dataset}}")], width=8,
          field_config={"min": 0, "max": 1})
    b.add("Board power", "watt",
          [(rate("edgescope_board_energy_joules_total", DEV), "{{device}}")], width=24,
          description="From the energy counter, so every 1 s power sample counts.")
    return dashboard("edgescope-compare", "edgescope / Compare devices",
                     "Per-epoch time, energy and storage load of runs on several boards, side by side.",
                     b, run_filter_variables() + [run_variable(True, "%s, %s" % (RUN_FILTERS, DEV))],
                     EPOCH_ANNOTATIONS)


def bottleneck_code(selector: str) -> str:
    """run:edgescope_train_bottleneck:info as one series per run whose value is the class's code, for a timeline."""
    return "max without (bottleneck) (%s)" % " or ".join(
        'run:edgescope_train_bottleneck:info{%s, bottleneck="%s"} * %d' % (selector, name, code)
        for code, (name, _) in sorted(BOTTLENECK_CODES.items()))


def training_run() -> Dict[str, Any]:
    b = Board()
    heat = {"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges"}}
    for title, histogram in [("Fetch stall per batch", "edgescope_train_fetch_stall_seconds"),
                             ("Compute per batch", "edgescope_train_compute_seconds"),
                             ("Batch time (end to end)", "edgescope_train_batch_seconds")]:
        b.add(title, "s", [(bucket_increase(histogram), "{{le}}")], kind="heatmap", width=8,
              options=heat)
    b.add("Fetch stall and compute, p50 / p95", "s",
          [(quantile(0.5, "edgescope_train_fetch_stall_seconds"), "stall p50 {{device}} {{run_id}}"),
           (quantile(0.95, "edgescope_train_fetch_stall_seconds"), "stall p95 {{device}} {{run_id}}"),
           (quantile(0.5, "edgescope_train_compute_seconds"), "compute p50 {{device}} {{run_id}}"),
           (quantile(0.95, "edgescope_train_compute_seconds"), "compute p95 {{device}} {{run_id}}")])
    b.add("Throughput", "suffix: samples/s", [(rate("edgescope_train_samples_total", RUN), RUN_LEGEND)])
    b.add("Loss", "none", [("edgescope_train_loss{%s}" % RUN, RUN_LEGEND)], width=8)
    b.add("Epoch in progress", "none", [("edgescope_train_epoch{%s}" % RUN, RUN_LEGEND)], width=8,
          description="Steps at epoch boundaries; the annotations mark each epoch's start and end.")
    b.add("Share of batch time", "percentunit",
          [(share_of_batch_time("edgescope_train_fetch_stall_seconds"), "stall {{device}} {{run_id}}"),
           (share_of_batch_time("edgescope_train_compute_seconds"), "compute {{device}} {{run_id}}")],
          width=8, field_config={"min": 0, "max": 1})
    stall_split = "The fetch stall charged to what the loader's workers were doing during each wait " \
                  "(file reads vs decode/augment/collate): storage + preprocessing = fetch stall."
    b.add("Fetch stall: storage vs preprocessing (share of batch time)", "percentunit",
          [(share_of_batch_time("edgescope_train_fetch_stall_storage_seconds"), "storage {{device}} {{run_id}}"),
           (share_of_batch_time("edgescope_train_fetch_stall_preprocess_seconds"),
            "preprocessing {{device}} {{run_id}}")],
          field_config={"min": 0, "max": 1, "custom": {"stacking": {"mode": "normal"}, "fillOpacity": 40}},
          description=stall_split)
    b.add("Fetch stall split per batch, p50 / p95", "s",
          [(quantile(q, "edgescope_train_fetch_stall_%s_seconds" % part),
            "%s p%d {{device}} {{run_id}}" % (part, round(q * 100)))
           for part in ("storage", "preprocess") for q in (0.5, 0.95)],
          description=stall_split)
    b.states("Bottleneck (live, last minute)", [(bottleneck_code(RUN), RUN_LEGEND)], BOTTLENECKS, width=24,
             height=4, description="From the trainer's stall split, with edgescope-report's thresholds "
                                   "(run:edgescope_train_bottleneck:info); the report also checks the disk.")
    epoch_table(b, "Per epoch: where the fetch stall went", [
        ("fetch stall", "s", "edgescope_train_epoch_fetch_stall_seconds"),
        ("stall: storage", "s", "edgescope_train_epoch_fetch_stall_storage_seconds"),
        ("stall: preprocessing", "s", "edgescope_train_epoch_fetch_stall_preprocess_seconds"),
        ("workers reading", "s", "edgescope_train_epoch_read_seconds"),
        ("workers preprocessing", "s", "edgescope_train_epoch_preprocess_seconds"),
        ("host overhead", "s", "edgescope_train_epoch_host_overhead_seconds"),
        ("loader start-up", "s", "edgescope_train_epoch_loader_startup_seconds"),
        ("loader shutdown", "s", "edgescope_train_epoch_loader_shutdown_seconds"),
        ("run's storage reads", "bytes", "edgescope_train_epoch_io_read_bytes"),
        ("run's read calls returned", "bytes", "edgescope_train_epoch_io_rchar_bytes"),
        ("run's read calls", "none", "edgescope_train_epoch_io_read_syscalls")],
        description="Stall columns: the part of the epoch's fetch stall the training step waited for. "
                    "Workers columns: the work itself, summed over the loader's workers (mostly hidden "
                    "behind compute when the stall is small). Host overhead: time between steps spent "
                    "neither waiting nor computing; loader start-up and shutdown: iter(loader) and the "
                    "workers' teardown, out of the stall. The run's reads: /proc/<pid>/io of the processes "
                    "that made its batches (storage bytes, bytes returned, calls), beside the whole disk's.")
    b.add("Per epoch: what-ifs replayed on the loader timeline", "s",
          [("last_over_time(edgescope_train_epoch_duration_seconds{%s}[$__range])" % RUN, ""),
           ("sum by (device, run_id, epoch, what_if) (last_over_time("
            "edgescope_train_epoch_predicted_duration_seconds{%s}[$__range]))" % RUN, ""),
           ("last_over_time(edgescope_train_epoch_compute_seconds{%s}[$__range])" % RUN, ""),
           ("sum by (device, run_id, epoch, what_if) (last_over_time("
            "edgescope_train_epoch_predicted_compute_seconds{%s}[$__range]))" % RUN, "")],
          kind="table", width=24, height=8, links=[ROW_RUN_LINK],
          description="Each epoch's measured wall time and its replays with one change (dataset cached, "
                      "workers doubled, other storage, faster compute), and its compute measured and under "
                      "each change; edgescope-report averages them over the kept epochs with their spread "
                      "as the error bar, and sets a measured run's compute against the predicted one.",
          transformations=[{"id": "merge", "options": {}},
                           {"id": "organize", "options": {"excludeByName": {"Time": True, "__name__": True,
                                                                            "job": True, "instance": True},
                                                          "renameByName": {"Value #A": "measured",
                                                                           "Value #B": "predicted",
                                                                           "Value #C": "compute measured",
                                                                           "Value #D": "compute predicted"}}}])
    b.states("Running", [("edgescope_train_running{%s}" % RUN, RUN_LEGEND)],
             value_text({0: ("ended", "text"), 1: ("training", "green")}), width=24, height=4)
    board_state(b)
    b.add("Run configuration", "none",
          [("edgescope_train_run_info{%s}" % RUN, "")], kind="table", width=24, height=6)
    return dashboard(RUN_UID, "edgescope / Training run",
                     "One run: distributions of fetch stall and compute per batch, where the stall went "
                     "(storage vs preprocessing), throughput, loss, epochs, the board's state.",
                     b, [DEVICE_VAR, run_variable(multi=False)], EPOCH_ANNOTATIONS)


def device_health() -> Dict[str, Any]:
    b = Board()
    board_state(b)
    b.states("Exporter sources and datasets",
             [("edgescope_source_up{%s}" % DEV, "{{device}} {{source}}"),
              ("edgescope_dataset_up{%s}" % DEV, "{{device}} dataset {{dataset}}")], UP_DOWN)
    b.states("Why down", [("edgescope_source_down_info{%s}" % DEV, "{{device}} {{source}}: {{reason}}"),
                          ("edgescope_dataset_down_info{%s}" % DEV, "{{device}} {{dataset}}: {{reason}}")],
             value_text({1: ("down", "red")}), description="Empty while everything is up.")
    b.add("Source sample duration", "s",
          [("edgescope_source_sample_duration_seconds{%s}" % DEV, "{{device}} {{source}}")], width=8)
    b.add("Since the last successful sample", "s",
          [("time() - edgescope_source_last_success_timestamp_seconds{%s}" % DEV, "{{device}} {{source}}")],
          width=8, description="Prometheus' clock minus the board's: add the clock offset below.")
    b.add("Rejected samples", "none",
          [("increase(edgescope_source_rejected_samples_total{%s}[$__rate_interval])" % DEV,
            "{{device}} {{source}}")], width=8,
          description="Readings not exposed (not finite, out of their unit's range); the exporter logs why.")
    b.add("Power per rail", "watt",
          [(rate("edgescope_rail_energy_joules_total", DEV), "{{device}} {{rail}}"),
           ("edgescope_board_power_watts{%s}" % DEV, "{{device}} board")],
          description="Rails from their energy counters; board: the last sample.")
    b.add("Rail power, last sample", "watt",
          [("edgescope_rail_power_watts{%s}" % DEV, "{{device}} {{rail}}")])
    b.add("Energy: counter vs power gauge (5m)", "joule",
          [("device:edgescope_board_energy_joules:increase5m{%s}" % DEV, "{{device}} counter"),
           ("device:edgescope_board_power_watts:integral5m{%s}" % DEV, "{{device}} gauge")],
          width=12, description="The two should overlap: a gap means missed samples or a broken source.")
    b.add("Power readings missed", "s",
          [("increase(edgescope_board_energy_uncovered_seconds_total{%s}[$__rate_interval])" % DEV,
            "{{device}} uncovered")],
          width=12, description="Time in gaps between power readings, left out of the energy counter: "
                                "energy over a window is complete only where this stays 0.")
    b.add("Thermal zones and trip points", "celsius",
          [("edgescope_thermal_zone_temperature_celsius{%s}" % DEV, "{{device}} {{zone}}"),
           ('min by (device, zone) (edgescope_thermal_zone_trip_point_celsius{%s, '
            'trip_type=~"passive|hot|critical"})' % DEV, "{{device}} {{zone}} trip point")],
          description="Dashed: the lowest passive/hot/critical trip point of each zone.",
          overrides=[{"matcher": {"id": "byRegexp", "options": ".*trip point$"},
                      "properties": [{"id": "custom.lineStyle",
                                      "value": {"fill": "dash", "dash": [10, 10]}}]}])
    b.add("Sensor temperatures", "celsius",
          [("edgescope_temperature_celsius{%s}" % DEV, "{{device}} {{sensor}}")])
    b.add("Clock frequency", "hertz",
          [("edgescope_clock_frequency_hertz{%s}" % DEV, "{{device}} {{clock}}")], width=8)
    b.add("Clock against its maximum", "percentunit",
          [("edgescope_clock_frequency_hertz{%s} / edgescope_clock_frequency_max_hertz{%s}"
            % (DEV, DEV), "{{device}} {{clock}}")], width=8, field_config={"min": 0, "max": 1})
    b.add("Clock cap against the power mode's cap", "percentunit",
          [("edgescope_clock_frequency_policy_max_hertz{%s} / edgescope_clock_frequency_mode_max_hertz{%s}"
            % (DEV, DEV), "{{device}} {{clock}} cap / mode's cap"),
           ("edgescope_clock_frequency_min_hertz{%s} / edgescope_clock_frequency_policy_max_hertz{%s}"
            % (DEV, DEV), "{{device}} {{clock}} floor / cap")],
          width=8, field_config={"min": 0, "max": 1},
          description="cap / mode's cap below 1: thermal or over-current cooling lowered the clock's cap. "
                      "floor / cap = 1: the clock is pinned (jetson_clocks).")
    b.add("Cooling devices", "percentunit",
          [("edgescope_cooling_device_state{%s} / (edgescope_cooling_device_max_state{%s} > 0)" % (DEV, DEV),
            "{{device}} {{type}} {{cooling_device}}")], width=8, field_config={"min": 0, "max": 1},
          description="State / max state; 0 = not cooling. A fan's state is its speed step, any other "
                      "device's a throttling step.")
    b.add("Over-current throttle events", "none",
          [("increase(edgescope_throttle_events_total{%s}[$__rate_interval])" % DEV,
            "{{device}} {{sensor}}")], width=8)
    b.add("Memory and swap used", "bytes",
          [("edgescope_memory_used_bytes{%s}" % DEV, "{{device}} RAM used"),
           ("edgescope_memory_total_bytes{%s}" % DEV, "{{device}} RAM total"),
           ("edgescope_gpu_memory_bytes{%s}" % DEV, "{{device}} RAM the GPU holds"),
           ("edgescope_swap_used_bytes{%s}" % DEV, "{{device}} swap used"),
           ("edgescope_swap_total_bytes{%s}" % DEV, "{{device}} swap total")], width=8,
          description="A Jetson's GPU has no memory of its own: what it holds is part of the RAM used "
                      "(jtop's NvMapMemUsed; absent without jtop).")
    b.add("Disk utilisation (%util)", "percentunit",
          [(rate("edgescope_disk_io_time_seconds_total", DEV), "{{device}} {{disk}}")], width=6,
          field_config={"min": 0, "max": 1})
    b.add("Read await (r_await)", "s",
          [("%s / clamp_min(%s, 1e-9)" % (rate("edgescope_disk_read_time_seconds_total", DEV),
                                          rate("edgescope_disk_reads_completed_total", DEV)),
            "{{device}} {{disk}}")],
          width=6, description="0 while the disk reads nothing, as iostat prints it.")
    iostat = "As iostat prints it, over the exporter's sampling interval (%util and r_await: over the " \
             "graph's rate interval)."
    for title, unit, metric in [("r/s", "iops", "edgescope_disk_read_iops"),
                                ("rkB/s", "Bps", "edgescope_disk_read_bytes_per_second"),
                                ("r_await", "s", "edgescope_disk_read_await_seconds"),
                                ("%util", "percentunit", "edgescope_disk_utilisation_ratio")]:
        b.add("iostat " + title, unit, [("%s{%s}" % (metric, DEV), "{{device}} {{disk}}")], width=6,
              description=iostat)
    b.add("Write IOPS (w/s)", "iops",
          [(rate("edgescope_disk_writes_completed_total", DEV), "{{device}} {{disk}}")], width=6)
    b.add("Write throughput", "Bps",
          [(rate("edgescope_disk_written_bytes_total", DEV), "{{device}} {{disk}}")], width=6)
    b.add("Dataset resident in page cache", "bytes",
          [("edgescope_dataset_resident_bytes{%s}" % DEV, "{{device}} {{dataset}} resident"),
           ("edgescope_dataset_size_bytes{%s}" % DEV, "{{device}} {{dataset}} size")], width=8)
    b.add("Dataset page cache ratio", "percentunit",
          [("edgescope_dataset_page_cache_ratio{%s}" % DEV, "{{device}} {{dataset}}"),
           ("edgescope_dataset_page_cache_ratio_error_bound{%s}" % DEV, "{{device}} {{dataset}} ± bound")],
          width=8, field_config={"min": 0, "max": 1},
          description="Within ± bound of the true ratio with 99 % probability (0: every file measured).")
    b.add("Dataset files", "none",
          [("edgescope_dataset_files{%s}" % DEV, "{{device}} {{dataset}} files"),
           ("edgescope_dataset_sampled_files{%s}" % DEV, "{{device}} {{dataset}} measured"),
           ("increase(edgescope_dataset_scan_errors_total{%s}[$__rate_interval])" % DEV,
            "{{device}} {{dataset}} skipped (unreadable or vanished)")], width=8)
    b.add("Dataset measurement", "s",
          [("edgescope_dataset_scan_duration_seconds{%s}" % DEV, "{{device}} {{dataset}} took"),
           ("time() - edgescope_dataset_scan_timestamp_seconds{%s}" % DEV, "{{device}} {{dataset}} age")],
          width=12, description="took: wall time of the last measurement (paced by the CPU budget); "
                                "age: since it finished (Prometheus' clock minus the board's).")
    b.add("Dataset's disk", "none",
          [("edgescope_dataset_disk_info{%s}" % DEV, "")], kind="table", width=12,
          description="The whole block device holding each dataset; absent on tmpfs, overlay, NFS, btrfs.",
          transformations=[{"id": "organize", "options": {"excludeByName": {
              "Time": True, "__name__": True, "job": True, "instance": True, "Value": True}}}])
    b.add("Board clock offset", "s",
          [("edgescope_time_seconds{%s} - timestamp(edgescope_time_seconds{%s})" % (DEV, DEV),
            "{{device}} {{job}}")],
          width=8, description="The board's clock minus Prometheus' (each target's scrape); the report shifts "
                               "epoch edges by it.")
    b.add("Exporter sampling interval", "s",
          [("edgescope_exporter_interval_seconds{%s, %s}" % (DEV, EXPORTER_JOB), "{{device}}")],
          width=8, description="--interval: the energy counter lags by up to this (twice for tegrastats/jtop); the "
                      "trainer's epoch energy bound is built from it.")
    b.add("Exporter uptime", "s",
          [("edgescope_time_seconds{%s, %s} - edgescope_exporter_start_time_seconds{%s}"
            % (DEV, EXPORTER_JOB, DEV), "{{device}}")],
          width=8, description="By the board's clock; a drop to 0 is a restart (its energy counters start again).")
    return dashboard("edgescope-health", "edgescope / Device health",
                     "Board state, exporter sources, power per rail, temperatures against trip points, clocks "
                     "and their caps, cooling, throttling, disk, page cache.",
                     b, [DEVICE_VAR], [])


DASHBOARDS = {
    "compare-devices.json": compare_devices,
    "training-run.json": training_run,
    "device-health.json": device_health,
}


def render() -> Dict[str, str]:
    return {name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
            for name, build in DASHBOARDS.items()}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if a dashboard file differs from the generated one")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = DASHBOARD_DIR / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            DASHBOARD_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print("grafana/generate.py: out of date: %s; run `python3 grafana/generate.py`"
              % ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
