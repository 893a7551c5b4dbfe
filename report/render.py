"""The report as a terminal table, Markdown, CSV or JSON. JSON and CSV carry
raw numbers in base units (null / empty where unknown); the table and
Markdown round them for reading and print ``missing`` where unknown. The
table and Markdown show the reference method's columns unless asked for others
(``--columns``), and the table fits a terminal of ``WIDTH`` columns."""
import csv
import datetime
import io
import json
import re
import textwrap
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from exporter.yamlfile import one_line
from report.collect import Collected, Epoch, Run
from report.configuration import configuration_text, recorded_since
from report import powermode, powermode_report
from report.pareto import UNDER_MEASURED, add_predicted_points, fronts
from report.summary import FIELDS, REPLAYED, comparison, run_summary
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
# The reference method's columns: what the table and Markdown show unless --columns picks others.
DEFAULT_COLUMNS = ("e2e_seconds", "fetch_stall_seconds", "compute_seconds", "energy_joules", "energy_bound_joules",
                   "average_power_watts", "read_iops", "read_bytes_per_second", "page_cache_ratio")
WIDTH = 120  # the terminal the table is laid out for
# Headings of the columns that name what a row is (the rest are numbers, a bottleneck or a mark): the table says
# those every row shares once, above it, and puts the others on a line of their own where a row would not fit.
POWER_WAS = "power was"  # the text table's column (replayed or measured) where some run's power was replayed
LABELS = ("run", "device", "type", "storage", "model", "workload", "configuration", "measured as", "runs", "epochs",
          POWER_WAS)
MISSING = "missing"
REPLAYED_MARK = " (replayed)"  # energy and power from a recorded power log played back, not measured
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
    record["power_replayed"] = epoch.power_replayed
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
    report["notes"] += context_notes(report["comparison"]) + recorded_since(report["comparison"])
    # power_mode=M what-ifs (report.powermode_report): the modes of a board's nvpmodel.conf (--nvpmodel-conf, as labels)
    # and those other workloads of a device were measured in
    candidates, unknown = powermode_report.candidates_of_labels(settings.get("power_modes") or [])
    report["power_modes"] = powermode_report.mode_what_ifs(rows, candidates)
    report["notes"] += powermode_report.notes(report["power_modes"]) + unknown
    if settings.get("pareto"):
        report["pareto"], notes = fronts(report["comparison"], settings.get("power_budget"),
                                         settings.get("time_budget"))
        add_predicted_points(report["pareto"], rows)
        report["notes"] += notes + powermode_report.add_mode_points(report["pareto"], report["power_modes"])
    return report


def _cell(name: str, value: Optional[float]) -> str:
    return MISSING if value is None else COLUMNS[name][1](value)


def _epoch_cell(record: dict, name: str, marked: bool = True) -> str:
    """An epoch's number; its energy with the digits its bound allows; energy and power of replayed power
    ``marked`` so."""
    bound = record["energy_bound_joules"]
    if name == "energy_joules" and record[name] is not None and bound:
        text = "{:.{}f}".format(record[name], decimals(bound))
    else:
        text = _cell(name, record[name])
    replayed = marked and record.get("power_replayed") and name in REPLAYED and record[name] is not None
    return text + REPLAYED_MARK if replayed else text


def _stat_cell(name: str, stat: dict, bound: Optional[dict] = None, replayed: bool = False) -> str:
    """Mean ± std; energy's with the digits the larger of its std and its mean bound allows; energy and power
    of replayed power marked so, with no spread (a recording's is not the board's)."""
    if stat["mean"] is None:
        return MISSING
    if replayed and name in REPLAYED:
        return _cell(name, stat["mean"]) + REPLAYED_MARK
    if name == "energy_joules" and bound and bound["mean"]:
        places = decimals(max(stat["std"] or 0.0, bound["mean"]))
        return "{:.{}f}".format(stat["mean"], places) + (
            "" if stat["std"] is None else " ± {:.{}f}".format(stat["std"], places))
    text = _cell(name, stat["mean"])
    return text if stat["std"] is None else "{} ± {}".format(text, _cell(name, stat["std"]))


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


def _power_was(records: List[dict], marked: bool) -> Tuple[List[str], List[List[str]]]:
    """The heading and per record the cell of the column saying whether its power was replayed, where cells are
    not ``marked`` and some record's was (the text table: said once in the title where every row shares it)."""
    if marked or not any(r.get("power_replayed") for r in records):
        return [], [[] for _ in records]
    return [POWER_WAS], [["replayed" if r.get("power_replayed") else "measured"] for r in records]


def tables(report: dict, columns: Optional[Sequence[str]] = None, marked: bool = True) -> List[tuple]:
    """(title, headers, rows) of the human tables: ``columns`` of FIELDS (default: every one; with every one, who
    measured each epoch's energy too); energy and power of replayed power ``marked`` in each cell, else in a
    column of their own (POWER_WAS)."""
    fields = list(columns or FIELDS)
    heads = [COLUMNS[n][0] for n in fields]
    energy_by = set(fields) >= set(FIELDS)
    epoch_power, epoch_power_cells = _power_was(report["epochs"], marked)
    epochs = [[r["run_id"], r["device"], "{}{}".format(r["epoch"], "" if r["included_in_summary"] else "*")]
              + power + [_epoch_cell(r, n, marked) for n in fields]
              + ([r["energy_source"] or MISSING] if energy_by else [])
              for r, power in zip(report["epochs"], epoch_power_cells)]
    run_power, run_power_cells = _power_was(report["summary"], marked)
    summary = [[s["run_id"], s["device"], s["model"] or MISSING, ",".join(str(e) for e in s["epochs_included"])]
               + power + [_stat_cell(n, s[n], s["energy_bound_joules"], marked and bool(s.get("power_replayed")))
                          for n in fields] + [s["bottleneck"] or MISSING]
               for s, power in zip(report["summary"], run_power_cells)]
    common, varying = split_configuration(report["comparison"])
    measured_common, measured = split_configuration(report["comparison"], "measured_as")
    compare = [[c["device"], c["device_type"] or "", c["storage"] or "", c["model"] or MISSING,
                configuration_text(v) or "(same)", configuration_text(m) or "(same)", str(len(c["runs"])),
                "{} (under-measured)".format(c["epochs"]) if c["epochs"] == 1 else str(c["epochs"])]
               + [_stat_cell(n, c[n], c["energy_bound_joules"], marked and bool(c.get("power_replayed")))
                  for n in fields]
               + [c["bottleneck"] or MISSING] for c, v, m in zip(report["comparison"], varying, measured)]
    warmup = report["settings"]["warmup_epochs"]
    return [
        ("Per epoch (* = warm-up, left out of the means{}{})".format(
            "; energy by: trainer = measured by the trainer at the epoch's edges, exporter = the exporter's counter "
            "read at them" if energy_by else "",
            "; (replayed) = a recorded power log played back, not measured" if marked else ""),
         ["run", "device", "epoch"] + epoch_power + heads + (["energy by"] if energy_by else []), epochs),
        ("Per run: mean ± std over epochs >= {}".format(warmup), ["run", "device", "model", "epochs"] + run_power
         + heads + ["bottleneck"], summary),
        ("Comparison: one row per configuration and way of measuring it, time and energy per epoch of its "
         "workload (the samples epoch_samples says); common to all rows: {}; measured with {}".format(
             configuration_text(common) or "nothing", configuration_text(measured_common) or "nothing"),
         ["device", "type", "storage", "model", "configuration", "measured as", "runs", "epochs"] + heads
         + ["bottleneck"], compare),
        diagnosis_table(report),
    ] + ([power_mode_table(report)] if report.get("power_modes") else []) \
        + ([pareto_table(report, marked)] if "pareto" in report else [])


POWER_MODE_TITLE = ("Power-mode what-if per workload (predicted E2E / energy per epoch, each ± the largest of its "
                    "leave-one-mode-out errors over the measured modes; energy only where power was measured in "
                    "them, and checked only against a fake board's clock-driven power until a board's sweep is at "
                    "hand)")


def power_mode_table(report: dict) -> tuple:
    """One line per workload and mode it was not measured in, from the modes it was (report.powermode_report)."""
    rows = []
    for w in report["power_modes"]:
        for p in w["predicted"]:
            if p["e2e_seconds"] is None:
                cell = "{} ({})".format(MISSING, p["why"])
            else:
                cell = "{} ({}) / {}{}".format(
                    with_spread(p["e2e_seconds"], p["e2e_spread_seconds"], "s"), _mode_bar(w, "time"),
                    "{} ({})".format(with_spread(p["energy_joules"], p["energy_spread_joules"], "J"),
                                     _mode_bar(w, "energy")) if p["energy_joules"] is not None
                    else "{} J ({})".format(MISSING, p["power_why"]),
                    "; extrapolated: " + ", ".join(p["extrapolated"]) if p["extrapolated"] else "")
            rows.append([w["device"], w["workload_text"], configuration_text(w["configuration"]), p["mode"], cell])
    return POWER_MODE_TITLE, ["device", "workload", "configuration", "mode", "predicted"], rows


def _mode_bar(workload: dict, figure: str) -> str:
    """A power-mode prediction's bar (``figure``: time or energy) and the leave-one-out errors behind it."""
    cv = workload["cross_validation"]
    if cv[figure + "_error_ratio"] is not None:
        count = cv[figure + "_errors"]
        return "± {:.0%}: the largest of {} leave-one-mode-out error{}".format(
            cv[figure + "_error_ratio"], count, "" if count == 1 else "s")
    if len(workload["measured_modes"]) < powermode.MIN_CROSS_VALIDATED:
        return "no bar: {} measured modes, cross-validation needs {}".format(
            len(workload["measured_modes"]), powermode.MIN_CROSS_VALIDATED)
    return "unchecked: no leave-one-mode-out prediction of its {} was possible".format(figure)


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


DIAGNOSIS_TITLE = ("Diagnosis and what-if per configuration, its repeated runs pooled (predicted E2E / energy per "
                   "epoch ± its bar: the replayed epochs' spread × Student t and the model's error from the accuracy "
                   "bench; error ± its bar against the runs that measured that configuration)")


def diagnosis_table(report: dict) -> tuple:
    """One line per comparison row: the repeats of a configuration pool, so every spread holds the drift
    between runs as well as between epochs (the per-run what-ifs are in the JSON and CSV summary)."""
    names = list(dict.fromkeys(n for s in report["comparison"] for n in s["what_if"]))
    missing = {"e2e_seconds": None, "basis": "not predicted"}
    rows = [[" ".join(s["runs"]), s["device"], s["bottleneck"] or MISSING]
            + [_prediction_cell(s["what_if"].get(n, missing)) for n in names]
            + [s["bottleneck_evidence"]] for s in report["comparison"]]
    return (DIAGNOSIS_TITLE, ["runs", "device", "bottleneck"] + names + ["evidence"], rows)


def pareto_table(report: dict, marked: bool = True) -> tuple:
    """The fronts' points, then their replayed and predicted ones, each by the knobs that differ between them (the
    title says those every row shares); energy and power of replayed power ``marked`` in each cell too."""
    every = [p for front in report["pareto"] for kind in ("points", "replayed", "predicted")
             for p in front.get(kind, [])]
    common, _ = split_configuration(every)

    def knobs(point: dict) -> str:
        return configuration_text({k: v for k, v in point["configuration"].items() if k not in common}) or "(same)"
    replayed = REPLAYED_MARK if marked else ""
    rows = []
    for front in report["pareto"]:
        _, measured = split_configuration(front["points"], "measured_as")  # timing or page cache, where it varies
        for point, how in zip(front["points"], measured):
            mark = "recommended ({})".format(front["binding"]) if point is front["recommendation"] else \
                "dominated" if point["dominated"] else \
                "front, tied with {}".format("; ".join(point["ties"])) if point["ties"] else "front"
            if point["under_measured"]:
                mark += " ({})".format(UNDER_MEASURED)
            text = knobs(point) + (" (measured with {})".format(configuration_text(how)) if how else "")
            rows.append([front["device"], front["workload_text"], text,
                         with_spread(point["e2e_seconds"], point["e2e_spread_seconds"], "s"),
                         with_spread(point["energy_joules"], point["energy_spread_joules"], "J"),
                         MISSING if point["average_power_watts"] is None else
                         with_spread(point["average_power_watts"], point["power_spread_watts"], "W"), mark])
        for point in front.get("replayed", []):
            rows.append([front["device"], front["workload_text"], knobs(point),
                         with_spread(point["e2e_seconds"], point["e2e_spread_seconds"], "s"),
                         "{:.3g} J{}".format(point["energy_joules"], replayed),
                         MISSING if point["average_power_watts"] is None else
                         "{:.3g} W{}".format(point["average_power_watts"], replayed),
                         "replayed power: off the front, never recommended"])
        for point in front.get("predicted", []):
            rows.append([front["device"], front["workload_text"], knobs(point),
                         with_spread(point["e2e_seconds"], point["e2e_spread_seconds"], "s"),
                         with_spread(point["energy_joules"], point["energy_spread_joules"], "J"), MISSING,
                         "predicted: {} of {}{}".format(point["what_if"], " ".join(point["runs"]), "" if
                                                       point["model_error_ratio"] is not None else
                                                       " ({})".format(calibration.NOT_CALIBRATED))])
    settings = report["settings"]
    budget = ", ".join(x for x in (
        "power budget {:g} W".format(settings["power_budget"]) if settings.get("power_budget") is not None else "",
        "time budget {:g} s".format(settings["time_budget"]) if settings.get("time_budget") is not None else "") if x)
    return ("Pareto front per device × workload (time vs energy per epoch of the workload ± bar: the kept epochs' "
            "spread × Student t; dominated only beyond both bars, energy's widened by its bound; {}); common to all "
            "rows: {}".format(
                budget or "no budget given", configuration_text(common) or "nothing"),
            ["device", "workload", "configuration", "E2E", "energy", "power", "pareto"], rows)


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


def _grid(headers: List[str], rows: List[List[str]], indent: str = "") -> List[str]:
    """Headers, a rule and rows, each column as wide as its widest cell."""
    widths = [max(len(x) for x in column) for column in zip(headers, *rows)]
    line = lambda cells: (indent + "  ".join(c.ljust(w) for c, w in zip(cells, widths))).rstrip()  # noqa: E731
    return [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]


def _stacked(headers: List[str], rows: List[List[str]], named: List[int]) -> List[str]:
    """A table too wide for the terminal: the columns that name a row (``named``) on a line of their own (once
    for consecutive rows they share), under it the numbers, each spread on the line below its mean."""
    numbers = [i for i in range(len(headers)) if i not in named]
    means = [[r[i].split(" ± ")[0] for i in numbers] for r in rows]
    spreads = [["± " + r[i].split(" ± ", 1)[1] if " ± " in r[i] else "" for i in numbers] for r in rows]
    grid = _grid([headers[i] for i in numbers], [m for pair in zip(means, spreads) for m in pair], "  ")
    out, previous = grid[:2], None
    for row, mean, spread in zip(rows, grid[2::2], grid[3::2]):
        name = ", ".join("{} {}".format(headers[i], row[i]) for i in named)
        if name and name != previous:
            out.append(name)
            previous = name
        out += [mean] + ([spread] if spread.strip() else [])
    return out


def text_table(title: str, headers: List[str], rows: List[List[str]]) -> List[str]:
    """A table a terminal of WIDTH columns holds: what names the rows and is the same on every row is said once in
    the title; where a row's line is still too wide, the rest of its names go on a line of their own and each
    spread under its mean."""
    if not rows:
        return _wrapped(title) + ["(none: the notes below say why)", ""]
    labels = [i for i, h in enumerate(headers) if h in LABELS]
    shared = [i for i in labels if len({r[i] for r in rows}) == 1]
    if shared:
        title += "; every row: " + ", ".join("{} {}".format(headers[i], rows[0][i]) for i in shared)
    kept = [i for i in range(len(headers)) if i not in shared]
    headers, rows = [headers[i] for i in kept], [[r[i] for i in kept] for r in rows]
    lines = _grid(headers, rows)
    if max(len(x) for x in lines) > WIDTH:
        lines = _stacked(headers, rows, [i for i, h in enumerate(headers) if h in LABELS])
    return _wrapped(title) + lines + [""]


# What each what-if changes, as the diagnosis says it (storage_bps=N and compute_speedup=K have their own words).
WHAT_IF_TEXT = {"dataset_cached": "the dataset cached", "workers_doubled": "twice the workers",
                "workers_doubled_storage_scales": "twice the workers, storage keeping up"}


def what_if_text(name: str) -> str:
    kind, _, value = name.partition("=")
    if kind == "compute_speedup":
        return "compute {}x faster".format(value)
    if kind == "storage_bps":
        return "storage reading {:g} MB/s".format(float(value) / 1e6)
    return WHAT_IF_TEXT.get(name, name)


def _wrapped(text: str, indent: str = "") -> List[str]:
    """``text`` in lines of at most WIDTH, never broken inside a run id, a value ± its spread, or a value and its
    unit."""
    kept = re.sub(r"(\d) (?=(?:± |[sJW%]\b))", "\\1\u00a0", one_line(text).replace(" ± ", " ±\u00a0"))
    return [line.replace("\u00a0", " ") for line in textwrap.wrap(
        kept, WIDTH, initial_indent=indent, subsequent_indent=indent + "    ", break_on_hyphens=False,
        break_long_words=False)]


def diagnosis_text(report: dict) -> List[str]:
    """The diagnosis and what-if table in sentences a terminal holds: per configuration its bottleneck and E2E,
    the evidence, then each what-if with its spread and, where another configuration measured it, the error."""
    _, varying = split_configuration(report["comparison"])
    models = len({row["model"] for row in report["comparison"]}) > 1
    out = _wrapped(DIAGNOSIS_TITLE)
    for row, differs in zip(report["comparison"], varying):
        if models:
            differs = dict(differs, model=row["model"] or MISSING)
        e2e = row["e2e_seconds"]
        verdict = "no diagnosis" if row["bottleneck"] is None else "mixed bottleneck" \
            if row["bottleneck"] == "mixed" else row["bottleneck"] + "-bound"
        out += _wrapped("{}{}, E2E {} an epoch ({} {} on {})".format(
            configuration_text(differs) + ": " if differs else "", verdict,
            MISSING if e2e["mean"] is None else with_spread(e2e["mean"], e2e["std"], "s"),
            "runs" if len(row["runs"]) > 1 else "run", " ".join(row["runs"]), row["device"]))
        out += _wrapped("why: " + row["bottleneck_evidence"], "  ")
        said = {}  # type: Dict[str, List[str]]  # what the what-ifs predict -> which say it (the same missing)
        for name, prediction in row["what_if"].items():
            said.setdefault(_prediction_cell(prediction), []).append(what_if_text(name))
        out += [line for cell, names in said.items()
                for line in _wrapped("with {}: {}".format(" / ".join(names), cell), "  ")]
    return out + [""]


def terminal_tables(report: dict, columns: Optional[Sequence[str]] = DEFAULT_COLUMNS,
                    marked: bool = True) -> List[tuple]:
    """``tables`` with every cell one line of visible characters: a label value from Prometheus holding NUL,
    BEL, a newline or U+202E (which reverses what follows on a terminal) is shown escaped, \\x07, \\u202e."""
    return [(one_line(title), [one_line(h) for h in headers], [[one_line(c) for c in row] for row in rows])
            for title, headers, rows in tables(report, columns, marked)]


def as_text(report: dict, columns: Optional[Sequence[str]] = DEFAULT_COLUMNS) -> str:
    """The tables for a terminal: replayed power said in a column of its own (said once in the title where every
    row shares it) rather than beside every number."""
    out = []
    for title, headers, rows in terminal_tables(report, columns, marked=False):
        out += diagnosis_text(report) if title == one_line(DIAGNOSIS_TITLE) else text_table(title, headers, rows)
    out += [line for n in report["notes"] for line in _wrapped("note: " + n)]
    return "\n".join(out).rstrip() + "\n"


def as_markdown(report: dict, columns: Optional[Sequence[str]] = DEFAULT_COLUMNS) -> str:
    out = []
    for title, headers, rows in terminal_tables(report, columns):
        out += ["### " + title, "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows] + [""]
    out += ["> note: " + one_line(n) for n in report["notes"]]
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


FORMATS = {"table": as_text, "markdown": as_markdown}  # type: Dict[str, Callable[..., str]]


def render(report: dict, fmt: str, section: str = "epochs",
           columns: Optional[Sequence[str]] = DEFAULT_COLUMNS) -> str:
    """The report in ``fmt``: the table and Markdown with ``columns`` (None: all), csv and json every one."""
    if fmt == "csv":
        return as_csv(report, section)
    if fmt == "json":
        return as_json(report)
    return FORMATS[fmt](report, columns)
