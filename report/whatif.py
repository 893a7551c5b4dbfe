"""What would make a run faster or cheaper: its epoch time and energy
predicted, from its own measured means only, for the dataset fully cached,
the DataLoader workers doubled, and the storage replaced by one of a given
read rate; and the prediction error wherever the report also holds a run
that measured the predicted configuration.

Model (DS-Analyzer's, on the trainer's stall decomposition): the loader
pipeline needs ``(read_s + preprocess_s) / workers`` seconds an epoch; the
accelerator waits (fetch stall) where it is behind. A change that shortens
the loader's time by D shortens the stall by D, until the stall is gone; an
epoch is never shorter than its compute time, nor than the epoch of the same
setup's synthetic-input pass where the report holds one (``--profile``: no
loader at all, the model's compute alone). Energy = the run's average power ×
predicted time.
"""
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from report.diagnosis import CACHED, Stats, mean_of

# Labels that the what-ifs change or that name a profile pass: left out when
# looking for a run that measured the predicted configuration.
CHANGED_BY = {"dataset_cached": ("page_cache", "profile_pass"),
              "workers_doubled": ("workers",)}
# What sets the synthetic-input pass (trainer --synthetic-input: run_info input="synthetic") apart from the run.
SYNTHETIC_PASS = ("page_cache", "profile_pass", "input")
FULLY_CACHED = 0.99  # a run with at least this page-cache ratio measured the "dataset cached" configuration
CPU_LABELS = ("cpu_count", "nproc")  # run_info labels that may carry the board's CPU count


def _int_label(configuration: Dict[str, str], names: Sequence[str]) -> Optional[int]:
    for name in names:
        try:
            return int(configuration[name])
        except (KeyError, ValueError):
            continue
    return None


class Floor(NamedTuple):
    """The shortest epoch a loader change can give, and where that figure comes from."""
    seconds: float
    source: str


def synthetic_input(record: dict) -> bool:
    """A synthetic-input pass: no loader, nothing a what-if could change."""
    return record.get("configuration", {}).get("input") == "synthetic"


def _outcome(stall_cut: float, e2e: float, floor: Floor, power: Optional[float], basis: str) -> dict:
    predicted = e2e - stall_cut
    if predicted < floor.seconds:
        predicted, basis = floor.seconds, "{}; at the floor, {}".format(basis, floor.source)
    return {"e2e_seconds": predicted, "energy_joules": None if power is None else power * predicted, "basis": basis}


def _missing(why: str) -> dict:
    return {"e2e_seconds": None, "energy_joules": None, "basis": why}


def predict(record: dict, storage_bps: Optional[float], synthetic_e2e: Optional[float] = None) -> Dict[str, dict]:
    """The what-ifs of one summary record (a run or a comparison row); ``synthetic_e2e``: the epoch time of
    its setup's synthetic-input pass, if measured."""
    stats = record  # the record carries each field's {"mean", "std"}
    e2e, stall = mean_of(stats, "e2e_seconds"), mean_of(stats, "fetch_stall_seconds")
    compute = mean_of(stats, "compute_seconds")
    power = mean_of(stats, "average_power_watts")
    names = ["dataset_cached", "workers_doubled"] + (["storage_bps={:g}".format(storage_bps)] if storage_bps else [])
    if synthetic_input(record):
        return {name: _missing("synthetic input: no loader to change") for name in names}
    if e2e is None or stall is None or compute is None:
        return {name: _missing("E2E, fetch stall or compute missing") for name in names}
    floor = Floor(compute, "its compute {:.2f} s".format(compute))
    if synthetic_e2e is not None and compute < synthetic_e2e <= e2e:  # above the run's own epoch: noise, not a floor
        floor = Floor(synthetic_e2e, "the synthetic-input pass's epoch {:.2f} s".format(synthetic_e2e))
    out = {}
    reading = _loader_reading(record, stats)
    if reading is None:
        out["dataset_cached"] = _missing("no read time or storage stall from the trainer's decomposition")
    else:
        out["dataset_cached"] = _outcome(min(reading[0], stall), e2e, floor, power,
                                         "the loader's {} gone from the stall".format(reading[1]))
    out["workers_doubled"] = _workers_doubled(record, stats, e2e, stall, floor, power)
    if storage_bps:
        out[names[-1]] = _storage(stats, storage_bps, e2e, stall, reading, floor, power)
    return out


def _loader_reading(record: dict, stats: Stats) -> Optional[Tuple[float, str]]:
    """Seconds of the loader's epoch spent reading files, and how they were
    found: the workers' read time over the workers, else (loading in the main
    process, or no read time) the storage stall."""
    workers = _int_label(record.get("configuration", {}), ("workers",))
    read, storage_stall = mean_of(stats, "read_seconds"), mean_of(stats, "fetch_stall_storage_seconds")
    if workers and read is not None:
        return read / workers, "read time ({:.2f} s over {} workers)".format(read, workers)
    if storage_stall is not None:
        return storage_stall, "storage stall ({:.2f} s)".format(storage_stall)
    return None


def _workers_doubled(record: dict, stats: Stats, e2e: float, stall: float, floor: Floor,
                     power: Optional[float]) -> dict:
    configuration = record.get("configuration", {})
    workers = _int_label(configuration, ("workers",))
    preprocess = mean_of(stats, "preprocess_seconds")
    if not workers:
        return _missing("workers {} (loading in the main process or not labelled): nothing to double".format(
            "unknown" if workers is None else 0))
    if preprocess is None:
        return _missing("no worker preprocessing time from the trainer")
    cpus = _int_label(configuration, CPU_LABELS)
    assumed = "{} CPUs".format(cpus) if cpus else "CPU count unknown (no cpu_count label): assumed >= {}".format(
        2 * workers)
    if cpus and record.get("torch_device") == "cpu" and cpus > 1:
        cpus -= 1  # the training step itself keeps a CPU busy
        assumed += ", one of them training (torch_device cpu)"
    # the loader runs min(workers, cpus) at once today (its preprocess time includes waiting for a CPU)
    speedup = min(2 * workers, cpus) / min(workers, cpus) if cpus else 2.0
    saved = preprocess / workers * (1 - 1 / speedup)
    return _outcome(min(saved, stall), e2e, floor, power,
                    "preprocessing {:.2f}x faster ({} workers -> {}, {}); reads unchanged".format(
                        speedup, workers, 2 * workers, assumed))


def _storage(stats: Stats, storage_bps: float, e2e: float, stall: float, reading: Optional[Tuple[float, str]],
             floor: Floor, power: Optional[float]) -> dict:
    """The loader's read time scaled by the measured disk's speed over N. Its
    speed is bytes read per second of I/O in flight (read rate / utilisation),
    the read rate itself where utilisation is unknown."""
    rate, busy = mean_of(stats, "read_bytes_per_second"), mean_of(stats, "disk_utilisation_ratio")
    if reading is None or not rate:
        return _missing("read time, storage stall or disk read rate missing")
    speed = rate / busy if busy else rate
    how = "{:.2f} MB/s read / {:.0%} busy".format(rate / 1e6, busy) if busy else \
        "{:.2f} MB/s read, utilisation unknown".format(rate / 1e6)
    return _outcome(min(reading[0] * (1 - speed / storage_bps), stall), e2e, floor, power,
                    "the loader's {} x {:.3g} (measured disk {:.2f} MB/s = {}; new {:.2f} MB/s)".format(
                        reading[1], speed / storage_bps, speed / 1e6, how, storage_bps / 1e6))


def _same_setup(a: dict, b: dict, ignored: Sequence[str]) -> bool:
    strip = lambda c: {k: v for k, v in c.items() if k not in ignored}  # noqa: E731
    setup = lambda r: (r["device"], r["model"], r.get("torch_device"), strip(r["configuration"]))  # noqa: E731
    return setup(a) == setup(b)


def synthetic_pass(record: dict, others: Sequence[dict]) -> Optional[dict]:
    """A measured synthetic-input pass of ``record``'s device, model, torch device and settings, if the report
    holds one."""
    if synthetic_input(record):
        return None
    return next((other for other in others if synthetic_input(other) and mean_of(other, "e2e_seconds") is not None
                 and _same_setup(record, other, SYNTHETIC_PASS)), None)


def measured_match(record: dict, others: Sequence[dict], what: str) -> Optional[dict]:
    """Another run of the same device, model and settings that ran the
    configuration ``what`` predicts for ``record``."""
    ignored = CHANGED_BY[what]
    for other in others:
        if other is record or not _same_setup(record, other, ignored):
            continue
        if what == "dataset_cached":
            mine, theirs = mean_of(record, CACHED), mean_of(other, CACHED)
            if other["configuration"].get("profile_pass") == "cached" or (
                    theirs is not None and theirs >= FULLY_CACHED and (mine is None or mine < FULLY_CACHED)):
                return other
        else:
            workers = _int_label(record["configuration"], ("workers",))
            if workers and _int_label(other["configuration"], ("workers",)) == 2 * workers:
                return other
    return None


def _error(predicted: Optional[float], measured: Optional[float]) -> Optional[float]:
    if predicted is None or not measured:
        return None
    return (predicted - measured) / measured


def add_what_ifs(records: List[dict], storage_bps: Optional[float]) -> None:
    """Set ``what_if`` on every record, with ``measured`` (run, E2E, energy,
    relative errors) under each prediction whose configuration was also run."""
    for record in records:
        synthetic = synthetic_pass(record, records)
        floor = None if synthetic is None else mean_of(synthetic, "e2e_seconds")
        record["what_if"] = predict(record, storage_bps, floor)
        for what in () if synthetic_input(record) else CHANGED_BY:
            match = measured_match(record, records, what)
            if match is None:
                continue
            prediction = record["what_if"][what]
            e2e, energy = mean_of(match, "e2e_seconds"), mean_of(match, "energy_joules")
            prediction["measured"] = {"run_id": match.get("run_id"), "e2e_seconds": e2e, "energy_joules": energy,
                                      "e2e_error_ratio": _error(prediction["e2e_seconds"], e2e),
                                      "energy_error_ratio": _error(prediction["energy_joules"], energy)}
