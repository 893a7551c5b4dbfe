"""Writes the edgescope Grafana dashboards (grafana/dashboards/*.json).

The dashboards are generated so that every panel is built the same way (the
provisioned datasource, a unit, a legend naming the device) and a change
of convention is one edit here. The JSON files are committed, and
tests/stack checks that they are what this script writes:

    python3 grafana/generate.py          # rewrite the JSON files
    python3 grafana/generate.py --check  # exit 1 if they are out of date

Queries may use only names from docs/metrics.md and prometheus/rules/
(checked by tests/stack). Rate queries use $__rate_interval.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

DATASOURCE = {"type": "prometheus", "uid": "edgescope-prometheus"}
DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"

DEV = 'device=~"$device"'
RUN = 'device=~"$device", run_id=~"$run"'

Target = Tuple[str, str]  # (PromQL expression, legend format)


def rate(metric: str, selector: str) -> str:
    return "rate(%s{%s}[$__rate_interval])" % (metric, selector)


def bucket_increase(histogram: str) -> str:
    return "sum by (le) (increase(%s_bucket{%s}[$__rate_interval]))" % (histogram, RUN)


def quantile(q: float, histogram: str) -> str:
    return "histogram_quantile(%s, sum by (device, run_id, le) (%s))" % (
        q, rate(histogram + "_bucket", RUN))


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
            transformations: Optional[List[Dict[str, Any]]] = None) -> None:
        if self.x + width > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        instant = kind in ("bargauge", "table", "stat")
        panel = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DATASOURCE,
            "gridPos": {"x": self.x, "y": self.y, "w": width, "h": height},
            "fieldConfig": {"defaults": dict({"unit": unit}, **(field_config or {})),
                            "overrides": overrides or []},
            "options": options or {},
            "targets": [self._target(i, expr, legend, kind, instant)
                        for i, (expr, legend) in enumerate(targets)],
        }
        if transformations:
            panel["transformations"] = transformations
        self.panels.append(panel)
        self.x += width
        self.row_height = max(self.row_height, height)

    @staticmethod
    def _target(index: int, expr: str, legend: str, kind: str, instant: bool) -> Dict[str, Any]:
        target = {"refId": chr(ord("A") + index), "datasource": DATASOURCE, "expr": expr,
                  "legendFormat": legend, "instant": instant, "range": not instant}
        if kind == "heatmap":
            target["format"] = "heatmap"
        elif kind == "table":
            target["format"] = "table"
        return target


def variable(name: str, label: str, query: str, multi: bool) -> Dict[str, Any]:
    return {
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
        "query": {"query": query, "refId": name}, "definition": query,
        "refresh": 2, "sort": 1, "multi": multi, "includeAll": multi,
        "current": {}, "options": [],
    }


DEVICE_VAR = variable("device", "Device", 'label_values(up{job="edgescope-exporter"}, device)', True)


def run_variable(multi: bool) -> Dict[str, Any]:
    return variable("run", "Run", 'label_values(edgescope_train_run_info{%s}, run_id)' % DEV, multi)


EPOCH_ANNOTATION = {
    "name": "Epoch ends", "datasource": DATASOURCE, "enable": True, "iconColor": "purple",
    "expr": "edgescope_train_epoch_end_timestamp_seconds{%s} * 1000" % RUN,
    "useValueForTime": True, "step": "15s",
    "titleFormat": "epoch {{epoch}} done", "textFormat": "{{device}} run {{run_id}}",
}


def dashboard(uid: str, title: str, description: str, board: Board,
              variables: List[Dict[str, Any]], annotations: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {
        "uid": uid, "title": title, "description": description,
        "tags": ["edgescope"], "editable": True, "schemaVersion": 39,
        "time": {"from": "now-3h", "to": "now"}, "refresh": "30s",
        "timezone": "", "graphTooltip": 1,
        "templating": {"list": variables},
        "annotations": {"list": annotations},
        "links": [{"type": "dashboards", "tags": ["edgescope"], "asDropdown": False,
                   "includeVars": True, "keepTime": True, "title": "edgescope"}],
        "panels": board.panels,
    }


BARS = {"displayMode": "basic", "orientation": "horizontal", "showUnfilled": True,
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
EPOCH_LEGEND = "{{device}} {{run_id}} epoch {{epoch}}"
RUN_LEGEND = "{{device}} {{run_id}}"


def epoch_table(b: Board) -> None:
    """One row per device, run and epoch; E2E, stall, compute and energy side by side."""
    columns = [("E2E", "s", "edgescope_train_epoch_duration_seconds"),
               ("fetch stall", "s", "edgescope_train_epoch_fetch_stall_seconds"),
               ("compute", "s", "edgescope_train_epoch_compute_seconds"),
               ("energy", "joule", "run_epoch:edgescope_board_energy_joules:increase_in_epoch")]
    targets = [("sum by (device, run_id, epoch) (last_over_time(%s{%s}[$__range]))" % (metric, RUN), "")
               for _, _, metric in columns]
    names = {"Value #%s" % chr(ord("A") + i): title for i, (title, _, _) in enumerate(columns)}
    overrides = [{"matcher": {"id": "byName", "options": title},
                  "properties": [{"id": "unit", "value": unit}]} for title, unit, _ in columns]
    b.add("Per epoch, side by side", "s", targets, kind="table", width=24, height=9,
          overrides=overrides,
          transformations=[{"id": "merge", "options": {}},
                           {"id": "organize", "options": {"excludeByName": {"Time": True},
                                                          "renameByName": names}}],
          options={"sortBy": [{"displayName": "epoch", "desc": False}]})


def compare_devices() -> Dict[str, Any]:
    b = Board()
    epoch_table(b)
    per_epoch = [
        ("End-to-end time per epoch", "s", "edgescope_train_epoch_duration_seconds"),
        ("Fetch stall per epoch", "s", "edgescope_train_epoch_fetch_stall_seconds"),
        ("Compute per epoch", "s", "edgescope_train_epoch_compute_seconds"),
    ]
    for title, unit, metric in per_epoch:
        b.add(title, unit, [("last_over_time(%s{%s}[$__range])" % (metric, RUN), EPOCH_LEGEND)],
              kind="bargauge", width=8, height=10, options=BARS)
    b.add("Energy per epoch", "joule",
          [("last_over_time(run_epoch:edgescope_board_energy_joules:increase_in_epoch{%s}[$__range])"
            % RUN, EPOCH_LEGEND)],
          kind="bargauge", width=8, height=10, options=BARS,
          description="Mean board power while the epoch ran times its duration.")
    b.add("Average board power while training", "watt",
          [("avg by (device, run_id) (avg_over_time("
            "run_epoch:edgescope_board_power_watts:in_epoch{%s}[$__range]))" % RUN, RUN_LEGEND)],
          kind="bargauge", width=8, height=10, options=BARS)
    b.add("Samples per joule", "suffix: samples/J",
          [("avg_over_time(run:edgescope_train_samples_per_joule:rate1m{%s}[$__range])" % RUN,
            RUN_LEGEND)],
          kind="bargauge", width=8, height=10, options=BARS)
    b.add("Fetch stall share of batch time", "percentunit",
          [("%s / %s" % (rate("edgescope_train_fetch_stall_seconds_sum", RUN),
                         rate("edgescope_train_batch_seconds_sum", RUN)), RUN_LEGEND)])
    b.add("Throughput", "suffix: samples/s",
          [(rate("edgescope_train_samples_total", RUN), RUN_LEGEND)])
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
                     b, [DEVICE_VAR, run_variable(multi=True)], [EPOCH_ANNOTATION])


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
          description="Steps at epoch boundaries; the annotations mark each epoch's end.")
    b.add("Share of batch time", "percentunit",
          [("%s / %s" % (rate("edgescope_train_fetch_stall_seconds_sum", RUN),
                         rate("edgescope_train_batch_seconds_sum", RUN)), "stall {{device}} {{run_id}}"),
           ("%s / %s" % (rate("edgescope_train_compute_seconds_sum", RUN),
                         rate("edgescope_train_batch_seconds_sum", RUN)), "compute {{device}} {{run_id}}")],
          width=8, field_config={"min": 0, "max": 1})
    b.add("Run configuration", "none",
          [("edgescope_train_run_info{%s}" % RUN, "")], kind="table", width=24, height=6)
    return dashboard("edgescope-run", "edgescope / Training run",
                     "One run: distributions of fetch stall and compute per batch, throughput, loss, epochs.",
                     b, [DEVICE_VAR, run_variable(multi=False)], [EPOCH_ANNOTATION])


def device_health() -> Dict[str, Any]:
    b = Board()
    b.add("Power per rail", "watt",
          [(rate("edgescope_rail_energy_joules_total", DEV), "{{device}} {{rail}}"),
           ("edgescope_board_power_watts{%s}" % DEV, "{{device}} board")])
    b.add("Thermal zones and trip points", "celsius",
          [("edgescope_thermal_zone_temperature_celsius{%s}" % DEV, "{{device}} {{zone}}"),
           ('min by (device, zone) (edgescope_thermal_zone_trip_point_celsius{%s, '
            'trip_type=~"passive|hot|critical"})' % DEV, "{{device}} {{zone}} trip point")],
          description="Dashed: the lowest passive/hot/critical trip point of each zone.",
          overrides=[{"matcher": {"id": "byRegexp", "options": ".*trip point$"},
                      "properties": [{"id": "custom.lineStyle",
                                      "value": {"fill": "dash", "dash": [10, 10]}}]}])
    b.add("Sensor temperatures", "celsius",
          [("edgescope_temperature_celsius{%s}" % DEV, "{{device}} {{sensor}}")], width=8)
    b.add("Clock frequency", "hertz",
          [("edgescope_clock_frequency_hertz{%s}" % DEV, "{{device}} {{clock}}")], width=8)
    b.add("Clock against its maximum", "percentunit",
          [("edgescope_clock_frequency_hertz{%s} / edgescope_clock_frequency_max_hertz{%s}"
            % (DEV, DEV), "{{device}} {{clock}}")], width=8, field_config={"min": 0, "max": 1})
    b.add("Over-current throttle events", "none",
          [("increase(edgescope_throttle_events_total{%s}[$__rate_interval])" % DEV,
            "{{device}} {{sensor}}")], width=8)
    b.add("GPU utilisation", "percentunit",
          [("edgescope_gpu_utilisation_ratio{%s}" % DEV, "{{device}}")], width=8,
          field_config={"min": 0, "max": 1})
    b.add("Memory used", "bytes",
          [("edgescope_memory_used_bytes{%s}" % DEV, "{{device}}")], width=8)
    b.add("Disk utilisation (%util)", "percentunit",
          [(rate("edgescope_disk_io_time_seconds_total", DEV), "{{device}} {{disk}}")], width=8,
          field_config={"min": 0, "max": 1})
    b.add("Read await (r_await)", "s",
          [("%s / clamp_min(%s, 1e-9)" % (rate("edgescope_disk_read_time_seconds_total", DEV),
                                          rate("edgescope_disk_reads_completed_total", DEV)),
            "{{device}} {{disk}}")],
          width=8, description="0 while the disk reads nothing, as iostat prints it.")
    b.add("Dataset resident in page cache", "bytes",
          [("edgescope_dataset_resident_bytes{%s}" % DEV, "{{device}} {{dataset}} resident"),
           ("edgescope_dataset_size_bytes{%s}" % DEV, "{{device}} {{dataset}} size")], width=8)
    b.add("Exporter sources up", "none",
          [("edgescope_source_up{%s}" % DEV, "{{device}} {{source}}")], width=12,
          field_config={"min": 0, "max": 1},
          description="Why a source is down: edgescope_source_down_info{source, reason} (Explore).")
    b.add("Energy: counter vs power gauge (5m)", "joule",
          [("device:edgescope_board_energy_joules:increase5m{%s}" % DEV, "{{device}} counter"),
           ("device:edgescope_board_power_watts:integral5m{%s}" % DEV, "{{device}} gauge")],
          width=12, description="The two should overlap: a gap means missed samples or a broken source.")
    return dashboard("edgescope-health", "edgescope / Device health",
                     "Power per rail, temperatures against trip points, clocks, throttling, disk, page cache.",
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
