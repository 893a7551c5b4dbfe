"""What would make a run faster or cheaper, with error bars: the trainer
replays every epoch's recorded loader timeline with one change
(``trainer/timeline.py``: dataset cached, workers doubled, storage of another
read rate, compute K times faster) and publishes the predicted epoch time
(``edgescope_train_epoch_predicted_duration_seconds{what_if}``). Here a
record's prediction is the mean over its kept epochs, its error bar their
standard deviation widened by Student's t and combined with the model's own
error for that kind of what-if, from the accuracy bench (trainer/calibration.py);
fewer than 2 kept epochs give no prediction. Energy = the
record's average power x the predicted time (it assumes the power stays as
measured). A record is one run (the summary) or one comparison row, which pools
the epochs of every repeat of its configuration: its spreads then hold the
machine's drift between runs, which one run's epochs cannot show.

Where the report also holds a record of the same configuration (report.configuration)
that measured the predicted change, the prediction carries it: the error, its
bar (both spreads), ``within_noise`` when the two overlap, and how far that
record's compute moved from the compute the prediction assumed.
"""
import math
import statistics
from typing import Dict, List, Optional, Sequence

from report import configuration
from report.diagnosis import CACHED, mean_of
from trainer import calibration

# Labels (report.configuration's knobs and measurement) that a what-if changes: left out when looking for a run
# that measured the predicted configuration.
CHANGED_BY = {"dataset_cached": ("page_cache", "profile_pass"),
              "workers_doubled": ("workers",),
              "workers_doubled_storage_scales": ("workers",)}
DEFAULT_WHAT_IFS = ("dataset_cached", "workers_doubled", "workers_doubled_storage_scales")
FULLY_CACHED = 0.99  # a run with at least this page-cache ratio measured the "dataset cached" configuration
MIN_EPOCHS = 2  # an error bar needs a spread


def synthetic_input(record: dict) -> bool:
    """A synthetic-input pass: no loader, nothing a what-if could change."""
    return record.get("measured_as", {}).get("input") == "synthetic"


def _missing(why: str) -> dict:
    return {"e2e_seconds": None, "e2e_spread_seconds": None, "energy_joules": None, "energy_spread_joules": None,
            "compute_seconds": None, "epochs": 0, "epochs_spread_seconds": None, "model_error_ratio": None,
            "basis": why}


def storage_what_if(storage_bps: float) -> str:
    """The trainer's name for a replay with storage of ``storage_bps`` (edgescope-train --what-if-storage-bps)."""
    return "storage_bps={:g}".format(storage_bps)


def runs_of(record: dict) -> List[str]:
    """The runs a record holds: a comparison row's ``runs``, a summary record's own."""
    return list(record.get("runs") or [record["run_id"]])


def predict(record: dict, names: Sequence[str], table: calibration.Calibration) -> Dict[str, dict]:
    """Each what-if of one record from its kept epochs' ``predicted`` (what_if -> seconds per epoch): the mean,
    its bar (``e2e_spread_seconds``: trainer.calibration.bar, from the epochs' spread and ``table``'s model error,
    ``model_error_ratio`` None where not calibrated) and the epochs' spread alone."""
    if synthetic_input(record):
        return {name: _missing("synthetic input: no loader to change") for name in names}
    per_epoch = record.get("predicted", [])  # type: List[Dict[str, float]]
    per_epoch_compute = record.get("predicted_compute", [])  # type: List[Dict[str, float]]
    power = mean_of(record, "average_power_watts")
    out = {}
    for name in names:
        values = [epoch.get(name) for epoch in per_epoch]
        known = [v for v in values if v is not None]
        if not known:
            how = "--what-if-storage-bps" if name.startswith("storage_bps=") else \
                "--what-if-compute-speedup" if name.startswith("compute_speedup=") else None
            out[name] = _missing("not replayed by the trainer{}".format(
                " (run edgescope-train with {} {})".format(how, name.split("=", 1)[1]) if how else
                ": no timeline (a loader without trainer.data's timing, --timing none, or a dataset that does "
                "not fit in memory)"))
        elif len(known) < len(values):
            out[name] = _missing("replayed for {} of the {} kept epochs".format(len(known), len(values)))
        elif len(known) < MIN_EPOCHS:
            out[name] = _missing("{} kept epoch: an error bar needs {} or more".format(len(known), MIN_EPOCHS))
        else:
            mean, spread = statistics.mean(known), statistics.stdev(known)
            bar = calibration.bar(mean, spread, len(known), name, table)
            computes = [epoch.get(name) for epoch in per_epoch_compute]
            runs = len(runs_of(record))
            out[name] = {"e2e_seconds": mean, "e2e_spread_seconds": bar.seconds,
                         "energy_joules": None if power is None else power * mean,
                         "energy_spread_joules": None if power is None else power * bar.seconds,
                         "compute_seconds": statistics.mean(computes)  # type: ignore
                         if len(computes) == len(known) and None not in computes else None,
                         "epochs": len(known), "epochs_spread_seconds": spread,
                         "model_error_ratio": bar.relative_error,
                         "basis": "replayed on {} epochs' loader timelines{}; {}".format(
                             len(known), " of {} runs".format(runs) if runs > 1 else "", bar.note)}
    return out


def _workers(record: dict) -> Optional[int]:
    try:
        return int(record.get("configuration", {})["workers"])
    except (KeyError, ValueError):
        return None


def measured_match(record: dict, others: Sequence[dict], what: str) -> Optional[dict]:
    """Another record of the same configuration (report.configuration), measured the same way, that ran the
    change ``what`` predicts for ``record`` (none for storage and compute what-ifs: the report cannot tell
    storage or boards apart)."""
    ignored = CHANGED_BY.get(what)
    if ignored is None:
        return None
    for other in others:
        if other is record or synthetic_input(other) or not configuration.same_except(
                configuration.of_record(record), configuration.of_record(other), ignored):
            continue
        if what == "dataset_cached":
            mine, theirs = mean_of(record, CACHED), mean_of(other, CACHED)
            if other["measured_as"].get("profile_pass") == "cached" or (
                    theirs is not None and theirs >= FULLY_CACHED and (mine is None or mine < FULLY_CACHED)):
                return other
        else:
            workers = _workers(record)
            if workers and _workers(other) == 2 * workers:
                return other
    return None


def compared(predicted: float, predicted_spread: float, measured: float, measured_spread: Optional[float],
             compute_drift: Optional[float] = None) -> dict:
    """The relative error of a prediction against a measurement, its bar from both bars (first order), and
    whether the two overlap within them. Each is one sigma: the prediction's as ``predict`` gives it
    (trainer.calibration.bar: its epochs' spread widened by Student's t, with the model's own error), the
    measurement's its epochs' spread widened likewise (trainer.calibration.spread_bar).

    ``compute_drift`` (where known) is the measured run's compute minus the compute the prediction assumed,
    seconds per epoch: the machine's speed moving between the runs, or an effect of the change on the steps
    that the replay misses (a cold run's steps sharing the CPUs with its reads). One pair of runs cannot
    tell which, so it stays out of the bar; ``compute_covers`` says whether the error is no larger than the
    spreads and it together: then the compute's move alone can explain the difference."""
    spread = measured_spread or 0.0
    ratio = (predicted - measured) / measured
    bar = abs(predicted / measured) * math.hypot(predicted_spread / predicted if predicted else 0.0,
                                                 spread / measured)
    noise = predicted_spread + spread
    error = abs(predicted - measured)
    return {"e2e_error_ratio": ratio, "e2e_error_spread_ratio": bar, "within_noise": error <= noise,
            "compute_drift_seconds": compute_drift,
            "compute_covers": None if compute_drift is None else error <= noise + abs(compute_drift)}


def kept_epochs(record: dict) -> int:
    """How many kept epochs a record's means are over: a comparison row's ``epochs``, a summary's own."""
    return record["epochs"] if "epochs" in record else len(record.get("epochs_included", []))


def add_what_ifs(records: List[dict], storage_bps: Optional[float],
                 table: Optional[calibration.Calibration] = None) -> None:
    """Set ``what_if`` on every record (all run summaries, or all comparison rows), their bars from ``table``
    (default: trainer.calibration.load()), with ``measured`` (its runs, E2E ± spread, energy, the error ± its
    bar, within_noise) under each prediction whose configuration was also run."""
    table = calibration.load() if table is None else table
    for record in records:
        published = sorted({name for epoch in record.get("predicted", []) for name in epoch})
        names = list(DEFAULT_WHAT_IFS) + [n for n in published if n not in DEFAULT_WHAT_IFS
                                          and not n.startswith("storage_bps=")]
        if storage_bps:
            names.append(storage_what_if(storage_bps))
        record["what_if"] = predict(record, names, table)
        for what, prediction in record["what_if"].items():
            match = None if prediction["e2e_seconds"] is None else measured_match(record, records, what)
            if match is None:
                continue
            e2e = match.get("e2e_seconds", {})
            if e2e.get("mean") is None:
                continue
            compute = mean_of(match, "compute_seconds")
            drift = None if compute is None or prediction["compute_seconds"] is None \
                else compute - prediction["compute_seconds"]
            prediction["measured"] = dict(
                compared(prediction["e2e_seconds"], prediction["e2e_spread_seconds"], e2e["mean"],
                         calibration.spread_bar(e2e.get("std"), kept_epochs(match)), drift),
                runs=runs_of(match), e2e_seconds=e2e["mean"], e2e_spread_seconds=e2e.get("std"),
                energy_joules=mean_of(match, "energy_joules"))
