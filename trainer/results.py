"""An epoch's record: the line on stdout, the JSON object of ``--results``, the run's summary, and the Window a
restored record stands for."""
import json
import os
import statistics
import sys
from typing import Any, Dict, List, Optional

from exporter import atomicfile
from trainer.energy import EpochEnergy
from trainer.errors import UsageError
from trainer.meter import Window

# the stall split and the worker-side times: Window fields and --results keys alike (None: not measured)
LOAD_KEYS = ("fetch_stall_storage_s", "fetch_stall_preprocess_s", "read_s", "preprocess_s")


def append_result(path: Optional[str], record: Optional[Dict[str, Any]]) -> None:
    """Appends one JSON line, whole or not at all; ``None`` only checks that the file can be written (and sets
    aside a torn last line left by a crash, with a note)."""
    if not path:
        return
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        note = atomicfile.append_lines(path, [] if record is None else [json.dumps(record)])
    except OSError as error:
        raise UsageError(atomicfile.cannot_write("results", path, error, "pick another --results"))
    if note:
        print("edgescope-train: note: " + note, file=sys.stderr, flush=True)


def mean_std(values: List[float]) -> str:
    """One value has no spread to show: it prints alone (a ``± 0.000`` would claim a measured one)."""
    if len(values) == 1:
        return "{:.3f} s".format(values[0])
    return "{:.3f} ± {:.3f} s".format(statistics.mean(values), statistics.stdev(values))


def print_summary(history: List[Dict[str, Any]]) -> None:
    """Mean ± std over epochs 1..N-1 (all epochs when there is only one); one kept epoch: its values, n=1."""
    complete = [r for r in history if r["complete"]]
    chosen = [r for r in complete if r["epoch"] >= 1] or complete
    if not chosen:
        return
    parts = ["{} {}".format(label, mean_std([r[key] for r in chosen]))
             for label, key in (("E2E", "duration_s"), ("stall", "fetch_stall_s"),
                                ("storage stall", "fetch_stall_storage_s"),
                                ("preprocess stall", "fetch_stall_preprocess_s"),
                                ("compute", "compute_s"), ("overhead", "overhead_s"))
             if all(r.get(key) is not None for r in chosen)]
    if len(chosen) == 1:
        over = "epoch {} alone (n=1, no spread)".format(chosen[0]["epoch"])
    else:
        over = "mean ± std over epochs {}..{} (n={})".format(chosen[0]["epoch"], chosen[-1]["epoch"], len(chosen))
    print("{}: {}".format(over, ", ".join(parts)), flush=True)


def window_of(record: Dict[str, Any]) -> Window:
    """A restored epoch's totals (``--results``/checkpoint record) as the Window they came from."""
    return Window("epoch", record["duration_s"], record["fetch_stall_s"] or 0.0, record["compute_s"] or 0.0,
                  record["batches"], record["start_time"], record["end_time"],
                  **{key: record.get(key) for key in LOAD_KEYS})  # absent from older checkpoints


def epoch_record(run_id: str, epoch: int, complete: bool, window: Window, batches: int, samples: int,
                 loss: Optional[float], measured: bool, config: Dict[str, str],
                 used: Optional[EpochEnergy] = None) -> Dict[str, Any]:
    """One line of --results: the epoch's totals in seconds (None where --timing none measured nothing), and
    its energy where ``used`` measured it."""
    record = {"run_id": run_id, "epoch": epoch, "complete": complete, "batches": batches, "samples": samples,
              "duration_s": window.duration_s,
              "fetch_stall_s": window.fetch_stall_s if measured else None,
              "compute_s": window.compute_s if measured else None,
              "overhead_s": window.overhead_s if measured else None,
              "start_time": window.start_time, "end_time": window.end_time, "loss": loss}  # type: Dict[str, Any]
    record.update({key: getattr(window, key) if measured else None for key in LOAD_KEYS})
    record.update(config)
    record["energy_joules"] = used.joules if used else None
    record["average_power_watts"] = used.average_power_watts if used else None
    return record


def print_epoch(record: Dict[str, Any], epochs: int) -> None:
    def value(key: str, unit: str = "s", digits: int = 3) -> str:
        return "-" if record.get(key) is None else "{:.{}f} {}".format(record[key], digits, unit)
    print("epoch {}/{}{}: E2E {}  stall {} (storage {}, preprocess {})  compute {}  overhead {}  energy {}  "
          "power {}  (workers: read {}, preprocess {}; {} batches, {} samples, loss {})".format(
              record["epoch"], epochs, "" if record["complete"] else " (interrupted)", value("duration_s"),
              value("fetch_stall_s"), value("fetch_stall_storage_s"), value("fetch_stall_preprocess_s"),
              value("compute_s"), value("overhead_s"), value("energy_joules", "J", 2),
              value("average_power_watts", "W", 3), value("read_s"), value("preprocess_s"), record["batches"],
              record["samples"], "-" if record["loss"] is None else "{:.4f}".format(record["loss"])), flush=True)
