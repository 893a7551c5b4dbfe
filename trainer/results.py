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


# The summary's times: the first three always (a line within 120 columns), the rest with --verbose.
SUMMARY_KEYS = (("E2E", "duration_s"), ("stall", "fetch_stall_s"), ("compute", "compute_s"),
                ("storage stall", "fetch_stall_storage_s"), ("preprocess stall", "fetch_stall_preprocess_s"),
                ("host overhead", "host_overhead_s"), ("loader start-up", "loader_startup_s"),
                ("loader shutdown", "loader_shutdown_s"), ("overhead", "overhead_s"))


def print_summary(history: List[Dict[str, Any]], verbose: bool = False) -> None:
    """Mean ± std over epochs 1..N-1 (all epochs when there is only one: its values, n=1, no spread), and the
    what-ifs replayed on them, one a line, each ± its bar (trainer.calibration: the spread and the model's own
    error); every time with ``verbose``."""
    complete = [r for r in history if r["complete"]]
    chosen = [r for r in complete if r["epoch"] >= 1] or complete
    if not chosen:
        return

    def stat(values: List[float]) -> str:
        return with_spread(statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None, "s")
    parts = ["{} {}".format(label, stat([r[key] for r in chosen]))
             for label, key in SUMMARY_KEYS[:None if verbose else 3]
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
    print("what-if, epoch replayed (mean ± bar over the same epochs: spread × Student t {:.2f} for n={} and the "
          "model's error):".format(calibration.student_t(len(chosen)), len(chosen)), flush=True)
    for name in names:
        values = [(r.get("predicted_duration_s") or {}).get(name) for r in chosen]
        if any(v is None for v in values):
            basis = next(((r.get("prediction_basis") or {}).get(name) for r in chosen
                          if (r.get("predicted_duration_s") or {}).get(name) is None), None)
            print("  {} not predicted ({})".format(name, basis or "missing in some epochs"), flush=True)
        else:
            mean = statistics.mean(values)  # type: ignore
            bar = calibration.bar(mean, statistics.stdev(values), len(values), name, table)  # type: ignore
            print("  {} {}{}".format(name, with_spread(mean, bar.seconds, "s"), "" if bar.relative_error is not None
                                     else " ({})".format(calibration.NOT_CALIBRATED)), flush=True)


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
    record.update(prediction_fields(predictions or {}))
    return record


def prediction_fields(predictions: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """A record's PREDICTION_KEYS from ``trainer.timeline.what_ifs``' predictions."""
    return {"predicted_duration_s": {name: p.seconds for name, p in predictions.items()},
            "prediction_basis": {name: p.basis for name, p in predictions.items()},
            "predicted_compute_s": {name: p.compute_seconds for name, p in predictions.items()}}


def energy(record: Dict[str, Any]) -> str:
    """The epoch's energy with the digits its bound allows (``± bound``); without a bound, three
    significant digits; ``replayed energy`` and no bound where a recorded power log gave it: not this board's
    energy (the report shows it without a spread too), and the line keeps within 120 columns (the run's start-up
    line says it in full; --results keeps the bound)."""
    if record.get("energy_joules") is None:
        return "energy -"
    if record.get("power_replayed"):
        return "replayed energy " + with_spread(record["energy_joules"], None, "J")
    return "energy " + with_spread(record["energy_joules"], record.get("energy_bound_joules"), "J")


def _storage_share(record: Dict[str, Any]) -> str:
    """The storage part of the stall (the rest is preprocessing), as the line says it."""
    storage, preprocess = record.get("fetch_stall_storage_s"), record.get("fetch_stall_preprocess_s")
    if storage is None or preprocess is None or storage + preprocess <= 0:
        return ""
    return " ({:.0%} storage)".format(storage / (storage + preprocess))


def print_epoch(record: Dict[str, Any], epochs: int, verbose: bool = False) -> None:
    """The epoch's line within 120 columns: E2E, stall (and its storage share), compute, energy, power and loss;
    ``verbose`` adds the stall split in seconds, host overhead, the loader's start-up and shutdown, what is left,
    the workers' own read and preprocess time, batches and samples (all of them are in --results)."""
    def value(key: str, unit: str = "s") -> str:
        return "-" if record.get(key) is None else with_spread(record[key], None, unit)
    line = "epoch {}/{}{}: E2E {}, stall {}{}, compute {}, {}, power {}, loss {}".format(
        record["epoch"], epochs, "" if record["complete"] else " (interrupted)", value("duration_s"),
        value("fetch_stall_s"), _storage_share(record), value("compute_s"), energy(record),
        value("average_power_watts", "W"), "-" if record["loss"] is None else "{:.4f}".format(record["loss"]))
    if verbose:
        line += "; stall split: storage {}, preprocess {}; host overhead {}, loader start-up {}, shutdown {}, " \
            "overhead {}; workers: read {}, preprocess {}; {} batches, {} samples".format(
                value("fetch_stall_storage_s"), value("fetch_stall_preprocess_s"), value("host_overhead_s"),
                value("loader_startup_s"), value("loader_shutdown_s"), value("overhead_s"), value("read_s"),
                value("preprocess_s"), record["batches"], record["samples"])
    print(line, flush=True)
