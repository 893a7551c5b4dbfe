"""The report as a terminal table, Markdown, CSV or JSON. JSON and CSV carry
raw numbers in base units (null / empty where unknown); the table and
Markdown round them for reading and print ``missing`` where unknown."""
import csv
import datetime
import io
import json
import re
from typing import Callable, Dict, List, Optional, Tuple

from report.collect import Collected, Epoch, Run
from report.pareto import UNDER_MEASURED, add_predicted_points, fronts
from report.summary import FIELDS, comparison, run_summary
from report.whatif import add_what_ifs
from trainer import calibration
from trainer.precision import decimals, with_spread

# Heading and formatter of every per-epoch number, for people.
COLUMNS = {
    "e2e_seconds": ("E2E s", lambda v: "{:.2f}".format(v)),
    "fetch_stall_seconds": ("stall s", lambda v: "{:.2f}".format(v)),
    "compute_seconds": ("compute s", lambda v: "{:.2f}".format(v)),
    "stall_share": ("stall %", lambda v: "{:.1f}".format(100 * v)),
    "energy_joules": ("energy J", lambda v: "{:.1f}".format(v)),
    "energy_bound_joules": ("± energy J", lambda v: "{:.{}f}".format(v, decimals(v))),
    "average_power_watts": ("power W", lambda v: "{:.2f}".format(v)),
    "read_iops": ("read r/s", lambda v: "{:.1f}".format(v)),
    "read_bytes_per_second": ("read MB/s", lambda v: "{:.2f}".format(v / 1e6)),
    "page_cache_ratio": ("cached", lambda v: "{:.3f}".format(v)),
    "page_cache_lowest_ratio": ("cached min", lambda v: "{:.3f}".format(v)),
    "gpu_memory_bytes": ("GPU mem MB", lambda v: "{:.0f}".format(v / 1e6)),
    "fetch_stall_storage_seconds": ("stall storage s", lambda v: "{:.2f}".format(v)),
    "fetch_stall_preprocess_seconds": ("stall preproc s", lambda v: "{:.2f}".format(v)),
    "read_seconds": ("read s", lambda v: "{:.2f}".format(v)),
    "preprocess_seconds": ("preproc s", lambda v: "{:.2f}".format(v)),
    "disk_utilisation_ratio": ("disk busy", lambda v: "{:.3f}".format(v)),
    "host_overhead_seconds": ("host overhead s", lambda v: "{:.2f}".format(v)),
    "loader_startup_seconds": ("loader start s", lambda v: "{:.2f}".format(v)),
    "loader_shutdown_seconds": ("loader end s", lambda v: "{:.2f}".format(v)),
    "run_read_bytes_per_second": ("run read MB/s", lambda v: "{:.2f}".format(v / 1e6)),
}  # type: Dict[str, tuple]
MISSING = "missing"
# A cell that holds a number as the tables write it: 12.34, 5.6 ± 0.7, 0* (a warm-up epoch).
NUMBER = re.compile(r"^[-+]?\d[\d.]*\*?( ± [-+]?\d[\d.]*)?$")


def epoch_record(run: Run, epoch: Epoch, warmup_epochs: int) -> dict:
    record = {"run_id": run.run_id, "device": run.device, "instance": run.instance, "device_type": run.device_type,
              "storage": run.storage, "model": run.model, "epoch": epoch.epoch,
              "included_in_summary": epoch.epoch >= warmup_epochs, "start_timestamp_seconds": epoch.start,
              "end_timestamp_seconds": epoch.end, "samples": epoch.samples}
    for name in FIELDS:
        record[name] = getattr(epoch, name)
    record["energy_source"] = epoch.energy_source
    return record


def build(collected: Collected, warmup_epochs: int, settings: dict) -> dict:
    """Everything the report says, as one JSON-ready object. ``settings`` may
    hold ``storage_bps`` (a what-if) and ``pareto`` with ``power_budget`` /
    ``time_budget`` (the Pareto section)."""
    summary = [run_summary(r, warmup_epochs) for r in collected.runs]
    rows = comparison(collected.runs, warmup_epochs)
    table = calibration.load()
    for records in (summary, rows):  # per run, and pooled over each configuration's repeats
        add_what_ifs(records, settings.get("storage_bps"), table)
    report = {
        "settings": dict(settings, warmup_epochs=warmup_epochs),
        "epochs": [epoch_record(r, e, warmup_epochs) for r in collected.runs for e in r.epochs],
        "summary": summary,
        "comparison": rows,
        "notes": list(collected.notes) + ([table.problem] if table.problem else []),
    }
    report["notes"] += context_notes(report["comparison"])
    if settings.get("pareto"):
        report["pareto"], notes = fronts(report["comparison"], settings.get("power_budget"),
                                         settings.get("time_budget"))
        add_predicted_points(report["pareto"], rows)
        report["notes"] += notes
    return report


def _cell(name: str, value: Optional[float]) -> str:
    return MISSING if value is None else COLUMNS[name][1](value)


def _epoch_cell(record: dict, name: str) -> str:
    """An epoch's number; its energy with the digits its bound allows."""
    bound = record["energy_bound_joules"]
    if name == "energy_joules" and record[name] is not None and bound:
        return "{:.{}f}".format(record[name], decimals(bound))
    return _cell(name, record[name])


def _stat_cell(name: str, stat: dict, bound: Optional[dict] = None) -> str:
    """Mean ± std; energy's with the digits the larger of its std and its mean bound allows."""
    if stat["mean"] is None:
        return MISSING
    if name == "energy_joules" and bound and bound["mean"]:
        places = decimals(max(stat["std"] or 0.0, bound["mean"]))
        return "{:.{}f}".format(stat["mean"], places) + (
            "" if stat["std"] is None else " ± {:.{}f}".format(stat["std"], places))
    text = _cell(name, stat["mean"])
    return text if stat["std"] is None else "{} ± {}".format(text, _cell(name, stat["std"]))


def configuration_text(configuration: Dict[str, str]) -> str:
    return " ".join("{}={}".format(k, v) for k, v in sorted(configuration.items()))


def split_configuration(rows: List[dict], field: str = "configuration") -> Tuple[Dict[str, str],
                                                                               List[Dict[str, str]]]:
    """The settings (``field``: the configuration, or how it was measured) every row shares, and per row only
    those that differ: a comparison reads at a glance when its column shows what changes."""
    keys = sorted({k for r in rows for k in r.get(field, {})})
    common = {}
    for k in keys:
        values = {r.get(field, {}).get(k) for r in rows}
        if len(values) == 1 and None not in values:
            common[k] = values.pop()
    return common, [{k: v for k, v in r.get(field, {}).items() if k not in common} for r in rows]


def context_notes(rows: List[dict]) -> List[str]:
    """A row pooling runs whose context differs (report.configuration: not a knob, so no row of its own)."""
    return ["Comparison: runs {} of {} {} ({}) pool into one row: same configuration, though their {} differ".format(
        ", ".join(r["runs"]), r["device"], r["model"] or MISSING, configuration_text(r["configuration"]),
        ", ".join(r["context_differs"])) for r in rows if r.get("context_differs")]


def tables(report: dict) -> List[tuple]:
    """(title, headers, rows) of the three human tables."""
    heads = [COLUMNS[n][0] for n in FIELDS]
    epochs = [[r["run_id"], r["device"], "{}{}".format(r["epoch"], "" if r["included_in_summary"] else "*")]
              + [_epoch_cell(r, n) for n in FIELDS] + [r["energy_source"] or MISSING] for r in report["epochs"]]
    summary = [[s["run_id"], s["device"], s["model"] or MISSING, ",".join(str(e) for e in s["epochs_included"])]
               + [_stat_cell(n, s[n], s["energy_bound_joules"]) for n in FIELDS] + [s["bottleneck"] or MISSING]
               for s in report["summary"]]
    common, varying = split_configuration(report["comparison"])
    measured_common, measured = split_configuration(report["comparison"], "measured_as")
    compare = [[c["device"], c["device_type"] or "", c["storage"] or "", c["model"] or MISSING,
                configuration_text(v) or "(same)", configuration_text(m) or "(same)", str(len(c["runs"])),
                "{} (under-measured)".format(c["epochs"]) if c["epochs"] == 1 else str(c["epochs"])]
               + [_stat_cell(n, c[n], c["energy_bound_joules"]) for n in FIELDS] + [c["bottleneck"] or MISSING]
               for c, v, m in zip(report["comparison"], varying, measured)]
    warmup = report["settings"]["warmup_epochs"]
    return [
        ("Per epoch (* = warm-up, left out of the means; energy by: trainer = measured by the trainer at the "
         "epoch's edges, exporter = the exporter's counter read at them)", ["run", "device", "epoch"] + heads
         + ["energy by"], epochs),
        ("Per run: mean ± std over epochs >= {}".format(warmup), ["run", "device", "model", "epochs"] + heads
         + ["bottleneck"], summary),
        ("Comparison: one row per configuration and way of measuring it; common to all rows: {}; measured "
         "with {}".format(configuration_text(common) or "nothing", configuration_text(measured_common) or "nothing"),
         ["device", "type", "storage", "model", "configuration", "measured as", "runs", "epochs"] + heads
         + ["bottleneck"], compare),
        diagnosis_table(report),
    ] + ([pareto_table(report)] if "pareto" in report else [])


def _prediction_cell(prediction: dict) -> str:
    """Predicted E2E and energy per epoch ± their bar (trainer.calibration: the replayed epochs' spread and the
    model's error), and the error against the run that measured it ± its bar; the digits are those the bars
    allow."""
    if prediction["e2e_seconds"] is None:
        return "{} ({})".format(MISSING, prediction["basis"])
    text = with_spread(prediction["e2e_seconds"], prediction["e2e_spread_seconds"], "s")
    if prediction["energy_joules"] is not None:
        text += " / " + with_spread(prediction["energy_joules"], prediction["energy_spread_joules"], "J")
    if prediction["model_error_ratio"] is None:
        text += " ({})".format(calibration.NOT_CALIBRATED)
    measured = prediction.get("measured")
    if measured:
        drift = measured.get("compute_drift_seconds")
        text += " (measured {}: {}{}{})".format(
            with_spread(measured["e2e_seconds"], measured["e2e_spread_seconds"], "s"),
            with_spread(measured["e2e_error_ratio"], measured["e2e_error_spread_ratio"], percent=True),
            "" if drift is None else "; its compute {:+.2g} s from the predicted{}".format(
                drift, ", enough to explain the error" if measured["compute_covers"] and not measured["within_noise"]
                else ""),
            ", within noise" if measured["within_noise"] else "")
    return text


def diagnosis_table(report: dict) -> tuple:
    """One line per comparison row: the repeats of a configuration pool, so every spread holds the drift
    between runs as well as between epochs (the per-run what-ifs are in the JSON and CSV summary)."""
    names = list(dict.fromkeys(n for s in report["comparison"] for n in s["what_if"]))
    missing = {"e2e_seconds": None, "basis": "not predicted"}
    rows = [[" ".join(s["runs"]), s["device"], s["bottleneck"] or MISSING]
            + [_prediction_cell(s["what_if"].get(n, missing)) for n in names]
            + [s["bottleneck_evidence"]] for s in report["comparison"]]
    return ("Diagnosis and what-if per configuration, its repeated runs pooled (predicted E2E / energy per epoch "
            "± its bar: the replayed epochs' spread × Student t and the model's error from the accuracy bench; "
            "error ± its bar against the runs that measured that configuration)",
            ["runs", "device", "bottleneck"] + names + ["evidence"], rows)


def pareto_table(report: dict) -> tuple:
    rows = []
    for front in report["pareto"]:
        _, measured = split_configuration(front["points"], "measured_as")  # timing or page cache, where it varies
        for point, how in zip(front["points"], measured):
            mark = "recommended ({})".format(front["binding"]) if point is front["recommendation"] else \
                "dominated" if point["dominated"] else \
                "front, tied with {}".format("; ".join(point["ties"])) if point["ties"] else "front"
            if point["under_measured"]:
                mark += " ({})".format(UNDER_MEASURED)
            text = configuration_text(point["configuration"]) + (
                " (measured with {})".format(configuration_text(how)) if how else "")
            rows.append([front["device"], front["model"] or MISSING, text,
                         with_spread(point["e2e_seconds"], point["e2e_spread_seconds"], "s"),
                         with_spread(point["energy_joules"], point["energy_spread_joules"], "J"),
                         MISSING if point["average_power_watts"] is None else
                         with_spread(point["average_power_watts"], point["power_spread_watts"], "W"), mark])
        for point in front.get("predicted", []):
            rows.append([front["device"], front["model"] or MISSING, configuration_text(point["configuration"]),
                         with_spread(point["e2e_seconds"], point["e2e_spread_seconds"], "s"),
                         with_spread(point["energy_joules"], point["energy_spread_joules"], "J"), MISSING,
                         "predicted: {} of {}{}".format(point["what_if"], " ".join(point["runs"]), "" if
                                                       point["model_error_ratio"] is not None else
                                                       " ({})".format(calibration.NOT_CALIBRATED))])
    settings = report["settings"]
    budget = ", ".join(x for x in (
        "power budget {:g} W".format(settings["power_budget"]) if settings.get("power_budget") is not None else "",
        "time budget {:g} s".format(settings["time_budget"]) if settings.get("time_budget") is not None else "") if x)
    return ("Pareto front per device × model (time vs energy per epoch ± spread; dominated only beyond both "
            "spreads, energy's widened by its bound; {})".format(budget or "no budget given"),
            ["device", "model", "configuration", "E2E", "energy", "power", "pareto"], rows)


def numeric_columns(headers: List[str], rows: List[List[str]]) -> List[bool]:
    """Per column, whether every cell is a number or ``missing`` (and one is a
    number): the html and LaTeX tables right-align those, as numbers read best."""
    columns = list(zip(*rows)) if rows else [()] * len(headers)
    return [all(c == MISSING or NUMBER.match(c) for c in column) and any(c != MISSING for c in column)
            for column in columns]


def settings_text(report: dict) -> List[Tuple[str, str]]:
    """(name, value) of each setting the report was made with, for people (times in UTC)."""
    out = []
    for name, value in report["settings"].items():
        if name in ("since", "until") and isinstance(value, (int, float)):
            value = datetime.datetime.fromtimestamp(value, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        out.append((name.replace("_", " "), str(value)))
    return out


def as_text(report: dict) -> str:
    out = []
    for title, headers, rows in tables(report):
        widths = [max(len(x) for x in column) for column in zip(headers, *rows)]
        line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        out += [title, line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows] + [""]
    out += ["note: " + n for n in report["notes"]]
    return "\n".join(out).rstrip() + "\n"


def as_markdown(report: dict) -> str:
    out = []
    for title, headers, rows in tables(report):
        out += ["### " + title, "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows] + [""]
    out += ["> note: " + n for n in report["notes"]]
    return "\n".join(out).rstrip() + "\n"


def as_csv(report: dict, section: str) -> str:
    """One CSV table (``epochs``, ``summary`` or ``comparison``); summary and
    comparison numbers come as ``<field>_mean`` and ``<field>_std`` columns."""
    buffer = io.StringIO()
    records = report[section]
    if section == "epochs":
        flat = records
    else:
        flat = []
        for r in records:
            row = {k: v for k, v in r.items() if k not in FIELDS and k not in ("what_if", "predicted",
                                                                                "predicted_compute")}
            for key in ("configuration", "measured_as", "context"):
                row[key] = configuration_text(r.get(key, {}))
            row.update(_flat("what_if", r.get("what_if", {})))
            for key in ("epochs_included", "runs", "context_differs"):
                if key in row:
                    row[key] = " ".join(str(x) for x in row[key])
            for n in FIELDS:
                row[n + "_mean"], row[n + "_std"] = r[n]["mean"], r[n]["std"]
            flat.append(row)
    if flat:
        writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for row in flat for k in row)),
                                lineterminator="\n")
        writer.writeheader()
        for row in flat:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buffer.getvalue()


def _flat(prefix: str, value: dict) -> dict:
    """Nested dicts as ``prefix_key_subkey`` columns."""
    out = {}
    for key, item in value.items():
        name = "{}_{}".format(prefix, key)
        if isinstance(item, dict):
            out.update(_flat(name, item))
        else:
            out[name] = item
    return out


def as_json(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


FORMATS = {"table": as_text, "markdown": as_markdown, "json": as_json}  # type: Dict[str, Callable[[dict], str]]


def render(report: dict, fmt: str, section: str = "epochs") -> str:
    if fmt == "csv":
        return as_csv(report, section)
    return FORMATS[fmt](report)
