"""An epoch's record: the line on stdout, the JSON object of ``--results``, the run's summary, and the Window a
restored record stands for."""
import json
import math
import os
import statistics
import sys
from typing import Any, Dict, List, Optional

from exporter import atomicfile
from exporter.readfile import Unreadable
from trainer import calibration
from trainer.energy import EpochEnergy
from trainer.errors import UsageError
from trainer.meter import Window
from trainer.precision import with_spread

# the stall split and the worker-side times: Window fields and --results keys alike (None: not measured)
LOAD_KEYS = ("fetch_stall_storage_s", "fetch_stall_preprocess_s", "read_s", "preprocess_s")
# the loader's start-up and shutdown and the host's own time between steps (0 in records from before them)
LOADER_KEYS = ("host_overhead_s", "loader_startup_s", "loader_shutdown_s")
# the batch makers' own I/O (None: no /proc/<pid>/io, or not every batch carried it)
IO_KEYS = ("io_read_bytes", "io_rchar_bytes", "io_read_syscalls")
ENERGY_KEYS = ("energy_joules", "energy_bound_joules", "average_power_watts")
PREDICTION_KEYS = ("predicted_duration_s", "prediction_basis", "predicted_compute_s")
# every measured field of a record: a run's labels (config) sit beside them and may never take one's name
RECORD_FIELDS = frozenset(("run_id", "epoch", "complete", "batches", "samples", "duration_s", "fetch_stall_s",
                           "compute_s", "overhead_s", "start_time", "end_time", "loss")
                          + LOAD_KEYS + LOADER_KEYS + IO_KEYS + ENERGY_KEYS + PREDICTION_KEYS)


def append_result(path: Optional[str], record: Optional[Dict[str, Any]]) -> None:
    """Appends one JSON line, whole or not at all; ``None`` only checks that the file can be written (and sets
    aside a torn last line left by a crash, with a note)."""
    if not path:
        return
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # strict JSON: a NaN or infinity reaching a record is a bug to see here, not a file no parser reads
        note = atomicfile.append_lines(path, [] if record is None else [json.dumps(record, allow_nan=False)])
    except OSError as error:
        raise UsageError(atomicfile.cannot_write("results", path, error, "pick another --results"))
    if note:
        print("edgescope-train: note: " + note, file=sys.stderr, flush=True)


def complete_results(path: Optional[str], run_id: str, history: List[Dict[str, Any]]) -> List[int]:
    """Checks that ``path`` can be written; on --resume also appends the checkpoint's epochs that ``path`` lacks
    (a run killed or out of space after its checkpoint, before its record), so that each complete epoch is in
    --results once; the epochs added. (The checkpoint is saved before the record: a record never holds an epoch
    its checkpoint lacks.)"""
    append_result(path, None)  # it can be written, a torn last line set aside
    if not path or not history:
        return []
    try:
        lines, _ = atomicfile.read_lines(path)
    except (OSError, Unreadable) as error:
        raise UsageError("--resume: cannot read --results {}: {}; pick another --results".format(
            path, getattr(error, "strerror", None) or error))
    present = set()
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue  # not a record of this run
        if isinstance(record, dict) and record.get("run_id") == run_id and record.get("complete") is True \
                and isinstance(record.get("epoch"), int):
            present.add(record["epoch"])
    missing = [record for record in history if record["epoch"] not in present]
    for record in missing:
        append_result(path, record)
    return [record["epoch"] for record in missing]


def print_summary(history: List[Dict[str, Any]]) -> None:
    """Mean ± std over epochs 1..N-1 (all epochs when there is only one: its values, n=1, no spread), and the
    what-ifs replayed on them, each ± its bar (trainer.calibration: the spread and the model's own error)."""
    complete = [r for r in history if r["complete"]]
    chosen = [r for r in complete if r["epoch"] >= 1] or complete
    if not chosen:
        return

    def stat(values: List[float]) -> str:
        return with_spread(statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None, "s")
    parts = ["{} {}".format(label, stat([r[key] for r in chosen]))
             for label, key in (("E2E", "duration_s"), ("stall", "fetch_stall_s"),
                                ("storage stall", "fetch_stall_storage_s"),
                                ("preprocess stall", "fetch_stall_preprocess_s"),
                                ("compute", "compute_s"), ("host overhead", "host_overhead_s"),
                                ("loader start-up", "loader_startup_s"), ("loader shutdown", "loader_shutdown_s"),
                                ("overhead", "overhead_s"))
             if all(r.get(key) is not None for r in chosen)]
    if len(chosen) == 1:
        over = "epoch {} alone (n=1, no spread)".format(chosen[0]["epoch"])
    else:
        over = "mean ± std over epochs {}..{} (n={})".format(chosen[0]["epoch"], chosen[-1]["epoch"], len(chosen))
    print("{}: {}".format(over, ", ".join(parts)), flush=True)
    names = sorted({name for r in chosen for name in r.get("predicted_duration_s") or {}})
    if not names:
        return
    if len(chosen) < 2:
        print("what-if: not predicted from n=1 kept epoch: an error bar needs 2 or more", flush=True)
        return
    table = calibration.load()
    if table.problem:
        print("edgescope-train: note: " + table.problem, file=sys.stderr, flush=True)
    cells = []
    for name in names:
        values = [(r.get("predicted_duration_s") or {}).get(name) for r in chosen]
        if any(v is None for v in values):
            basis = next(((r.get("prediction_basis") or {}).get(name) for r in chosen
                          if (r.get("predicted_duration_s") or {}).get(name) is None), None)
            cells.append("{} not predicted ({})".format(name, basis or "missing in some epochs"))
        else:
            mean = statistics.mean(values)  # type: ignore
            bar = calibration.bar(mean, statistics.stdev(values), len(values), name, table)  # type: ignore
            cells.append("{} {}{}".format(name, with_spread(mean, bar.seconds, "s"), "" if bar.relative_error
                                          is not None else " ({})".format(calibration.NOT_CALIBRATED)))
    print("what-if, epoch replayed (mean ± bar over the same epochs: their spread × Student t {:.2f} for n={} and "
          "the model's error for that kind of what-if, from the accuracy bench): {}".format(
              calibration.student_t(len(chosen)), len(chosen), "; ".join(cells)), flush=True)


def window_of(record: Dict[str, Any]) -> Window:
    """A restored epoch's totals (``--results``/checkpoint record) as the Window they came from."""
    return Window("epoch", record["duration_s"], record["fetch_stall_s"] or 0.0, record["compute_s"] or 0.0,
                  record["batches"], record["start_time"], record["end_time"],
                  **{key: record.get(key) for key in LOAD_KEYS},  # absent from older checkpoints
                  **{key: record.get(key) or 0.0 for key in LOADER_KEYS},
                  **{key: record.get(key) for key in IO_KEYS})


def epoch_record(run_id: str, epoch: int, complete: bool, window: Window, batches: int, samples: int,
                 loss: Optional[float], measured: bool, config: Dict[str, str],
                 used: Optional[EpochEnergy] = None, predictions: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """One line of --results: the epoch's totals in seconds (None where --timing none measured nothing), its
    energy where ``used`` measured it, and its replayed what-ifs (``trainer.timeline.Prediction``s)."""
    record = {"run_id": run_id, "epoch": epoch, "complete": complete, "batches": batches, "samples": samples,
              "duration_s": window.duration_s,
              "fetch_stall_s": window.fetch_stall_s if measured else None,
              "compute_s": window.compute_s if measured else None,
              "overhead_s": window.overhead_s if measured else None,
              "start_time": window.start_time, "end_time": window.end_time,
              # a diverged run (a huge --lr) has no loss to report: null, as JSON can say
              "loss": loss if loss is not None and math.isfinite(loss) else None}  # type: Dict[str, Any]
    record.update({key: getattr(window, key) if measured else None for key in LOAD_KEYS + LOADER_KEYS + IO_KEYS})
    shadowing = RECORD_FIELDS & set(config)
    if shadowing:
        raise ValueError("labels {} would overwrite the record's own fields".format(", ".join(sorted(shadowing))))
    record.update(config)
    record["energy_joules"] = used.joules if used else None
    record["energy_bound_joules"] = used.bound_joules if used else None
    record["average_power_watts"] = used.average_power_watts if used else None
    record["power_replayed"] = bool(used and used.joules is not None and used.replayed)
    record["predicted_duration_s"] = {name: p.seconds for name, p in (predictions or {}).items()}
    record["prediction_basis"] = {name: p.basis for name, p in (predictions or {}).items()}
    record["predicted_compute_s"] = {name: p.compute_seconds for name, p in (predictions or {}).items()}
    return record


def energy(record: Dict[str, Any]) -> str:
    """The epoch's energy with the digits its bound allows (``± bound``); without a bound, three
    significant digits."""
    if record.get("energy_joules") is None:
        return "-"
    return with_spread(record["energy_joules"], record.get("energy_bound_joules"), "J") + (
        " (REPLAYED power log, not measured)" if record.get("power_replayed") else "")


def print_epoch(record: Dict[str, Any], epochs: int) -> None:
    def value(key: str, unit: str = "s", digits: int = 3) -> str:
        return "-" if record.get(key) is None else "{:.{}f} {}".format(record[key], digits, unit)
    print("epoch {}/{}{}: E2E {}  stall {} (storage {}, preprocess {})  compute {}  host overhead {}  loader "
          "start-up {} shutdown {}  overhead {}  energy {}  "
          "power {}  (workers: read {}, preprocess {}; {} batches, {} samples, loss {})".format(
              record["epoch"], epochs, "" if record["complete"] else " (interrupted)", value("duration_s"),
              value("fetch_stall_s"), value("fetch_stall_storage_s"), value("fetch_stall_preprocess_s"),
              value("compute_s"), value("host_overhead_s"), value("loader_startup_s"), value("loader_shutdown_s"),
              value("overhead_s"), energy(record),
              value("average_power_watts", "W", 3), value("read_s"), value("preprocess_s"), record["batches"],
              record["samples"], "-" if record["loss"] is None else "{:.4f}".format(record["loss"])), flush=True)
