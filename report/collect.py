"""Read runs, their epochs and the exporter's counters out of Prometheus and
turn them into per-epoch records (see docs/metrics.md for every name).

Trainer series are found by ``run_id``; the exporter's series of the same board
by the ``device`` target label Prometheus attaches to both jobs. Whatever is
not there stays None and is named in ``notes``: never a silent zero.
"""
import datetime
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from report import window
from report.prom import Labels, Prometheus, ReportError, Sample, duration, promql_string

# How far outside a run's epochs the exporter's raw samples are fetched, so
# that a sample on each side of every epoch edge is found at scrape intervals
# up to this long.
EDGE_PAD_SECONDS = 120.0
# Labels that identify a scrape target or a run rather than its configuration.
NOT_CONFIGURATION = {"__name__", "run_id", "device_name", "model", "torch_device", "job", "instance",
                     "device", "device_type", "storage"}

EPOCH_GAUGES = {
    "start": "edgescope_train_epoch_start_timestamp_seconds",
    "end": "edgescope_train_epoch_end_timestamp_seconds",
    "e2e_seconds": "edgescope_train_epoch_duration_seconds",
    "fetch_stall_seconds": "edgescope_train_epoch_fetch_stall_seconds",
    "compute_seconds": "edgescope_train_epoch_compute_seconds",
    "samples": "edgescope_train_epoch_samples",
}
RUN_INFO = "edgescope_train_run_info"
ENERGY = "edgescope_board_energy_joules_total"
POWER = "edgescope_board_power_watts"
DISK_READS = "edgescope_disk_reads_completed_total"
DISK_READ_BYTES = "edgescope_disk_read_bytes_total"
CACHE_RATIO = "edgescope_dataset_page_cache_ratio"


@dataclass
class Epoch:
    run_id: str
    device: str
    epoch: int
    start: Optional[float] = None
    end: Optional[float] = None
    e2e_seconds: Optional[float] = None
    fetch_stall_seconds: Optional[float] = None
    compute_seconds: Optional[float] = None
    samples: Optional[float] = None
    energy_joules: Optional[float] = None
    average_power_watts: Optional[float] = None
    read_iops: Optional[float] = None
    read_bytes_per_second: Optional[float] = None
    page_cache_ratio: Optional[float] = None

    @property
    def stall_share(self) -> Optional[float]:
        if self.fetch_stall_seconds is None or not self.e2e_seconds:
            return None
        return self.fetch_stall_seconds / self.e2e_seconds


@dataclass
class Run:
    run_id: str
    device: str
    device_type: Optional[str]
    storage: Optional[str]
    info: Labels
    epochs: List[Epoch] = field(default_factory=list)
    power: List[Sample] = field(default_factory=list)  # board power over the run, for plots

    @property
    def model(self) -> Optional[str]:
        return self.info.get("model")

    @property
    def configuration(self) -> Tuple[Tuple[str, str], ...]:
        """The run's settings apart from identity: what a comparison row is keyed on."""
        return tuple(sorted((k, v) for k, v in self.info.items() if k not in NOT_CONFIGURATION))


@dataclass
class Collected:
    runs: List[Run]
    notes: List[str]


def _run_matcher(run_ids: Sequence[str]) -> str:
    if not run_ids:
        return ""
    pattern = "|".join(re.escape(r) for r in run_ids)
    return "run_id=~" + promql_string(pattern)


def _device_selector(metric: str, device: str) -> str:
    return "{}{{device={}}}".format(metric, promql_string(device))


def _last_over(prom: Prometheus, metric: str, matcher: str, since: float, until: float) -> List[Tuple[Labels, float]]:
    query = "last_over_time({}{{{}}}[{}])".format(metric, matcher, duration(until - since))
    return prom.vector(query, until)


def find_runs(prom: Prometheus, run_ids: Sequence[str], since: float, until: float) -> Dict[str, Run]:
    """The runs (by run_id) with trainer data in [since, until], with their epochs'
    trainer-side numbers. Raises ReportError naming any requested run not found."""
    matcher = _run_matcher(run_ids)
    runs = {}  # type: Dict[str, Run]
    for labels, _ in _last_over(prom, RUN_INFO, matcher, since, until):
        run_id = labels.get("run_id", "")
        if run_id and run_id not in runs:
            info = {k: v for k, v in labels.items() if k not in ("__name__", "job", "instance")}
            runs[run_id] = Run(run_id=run_id, device=labels.get("device") or labels.get("device_name", ""),
                               device_type=labels.get("device_type"), storage=labels.get("storage"), info=info)
    epochs = {}  # type: Dict[Tuple[str, int], Epoch]
    for key, metric in EPOCH_GAUGES.items():
        for labels, value in _last_over(prom, metric, matcher, since, until):
            run_id, epoch_label = labels.get("run_id", ""), labels.get("epoch", "")
            if not run_id or not re.fullmatch(r"[0-9]{1,9}", epoch_label):  # an ASCII epoch number int() takes
                continue
            if run_id not in runs:  # epochs without run_info: still report them
                runs[run_id] = Run(run_id=run_id, device=labels.get("device", ""),
                                   device_type=labels.get("device_type"), storage=labels.get("storage"), info={})
            epoch = epochs.setdefault((run_id, int(epoch_label)),
                                      Epoch(run_id=run_id, device=runs[run_id].device, epoch=int(epoch_label)))
            setattr(epoch, key, value)
    unknown = [r for r in run_ids if r not in runs]
    if unknown:
        raise ReportError("unknown run {}: Prometheus at {} has no {} with that run_id between {} and {}; "
                          "check --run or widen --since".format(", ".join(repr(u) for u in unknown), prom.url,
                                                                 RUN_INFO, _iso(since), _iso(until)))
    for (run_id, _), epoch in sorted(epochs.items()):
        runs[run_id].epochs.append(epoch)
    return runs


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _same_path(a: str, b: str) -> bool:
    """True if one path lies inside (or is) the other: the exporter may watch the
    dataset's root or a folder below the trainer's --data-dir."""
    a, b = os.path.normpath(a), os.path.normpath(b)
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def _last_before(samples: Sequence[Sample], t: float, staleness: float) -> Optional[float]:
    candidates = [v for ts, v in samples if t - staleness <= ts <= t]
    return candidates[-1] if candidates else None


def add_exporter_data(prom: Prometheus, run: Run, notes: List[str], staleness: float = 300.0) -> None:
    """Fill energy, power, disk and page-cache numbers of every epoch of ``run``
    from the exporter series of the run's device."""
    timed = [e for e in run.epochs if e.start is not None and e.end is not None]
    if not timed:
        notes.append("run {}: no epoch start/end timestamps; energy, disk and page cache missing".format(run.run_id))
        return
    lo = min(e.start for e in timed) - EDGE_PAD_SECONDS  # type: ignore
    hi = max(e.end for e in timed) + EDGE_PAD_SECONDS  # type: ignore
    energy = prom.raw(_device_selector(ENERGY, run.device), lo, hi)
    reads = prom.raw(_device_selector(DISK_READS, run.device), lo, hi)
    read_bytes = prom.raw(_device_selector(DISK_READ_BYTES, run.device), lo, hi)
    cache = prom.raw(_device_selector(CACHE_RATIO, run.device), lo, hi)
    if not (energy or reads or cache):
        notes.append("run {}: no exporter data for device {!r} (energy, power, disk, page cache missing); is "
                     "edgescope-exporter scraped with the same device label?".format(run.run_id, run.device))
        return
    if not energy:
        notes.append("run {}: device {!r} has no {} (no power source on the exporter?); energy and power "
                     "missing".format(run.run_id, run.device, ENERGY))
    elif len(energy) > 1:
        notes.append("run {}: device {!r} has {} energy series; using the one with labels {}".format(
            run.run_id, run.device, len(energy), sorted(energy[0][0].items())))
    cache_series = _pick_dataset(cache, run, notes)
    uncovered = []
    for epoch in timed:
        start, end = float(epoch.start), float(epoch.end)  # type: ignore
        if energy:
            epoch.energy_joules = window.increase(energy[0][1], start, end)
            if epoch.energy_joules is None:
                uncovered.append(epoch.epoch)
            elif end > start:
                epoch.average_power_watts = epoch.energy_joules / (end - start)
        epoch.read_iops = _summed_rate(reads, start, end)
        epoch.read_bytes_per_second = _summed_rate(read_bytes, start, end)
        if cache_series is not None:
            epoch.page_cache_ratio = _last_before(cache_series, end, staleness)
    if uncovered:
        notes.append("run {}: exporter samples do not cover epoch(s) {} on both edges; their energy is "
                     "missing".format(run.run_id, ", ".join(str(e) for e in uncovered)))
    first, last = lo + EDGE_PAD_SECONDS, hi - EDGE_PAD_SECONDS
    power = prom.range(_device_selector(POWER, run.device), first, last, max(1.0, (last - first) / 600.0))
    run.power = power[0][1] if power else []


def _summed_rate(series: List[Tuple[Labels, List[Sample]]], start: float, end: float) -> Optional[float]:
    """Sum over disks of each disk's average rate in the window; None if any
    disk's samples do not cover it (a partial sum would understate the load)."""
    if not series:
        return None
    total = 0.0
    for _, samples in series:
        r = window.rate(samples, start, end)
        if r is None:
            return None
        total += r
    return total


def _pick_dataset(cache: List[Tuple[Labels, List[Sample]]], run: Run, notes: List[str]) -> Optional[List[Sample]]:
    """The page-cache series of the run's dataset: the one whose ``dataset`` path
    matches the run's ``data_dir`` label, or the only one watched."""
    if not cache:
        return None
    data_dir = run.info.get("data_dir")
    if data_dir:
        for labels, samples in cache:
            if _same_path(labels.get("dataset", ""), data_dir):
                return samples
    if len(cache) == 1:
        return cache[0][1]
    notes.append("run {}: device {!r} watches {} datasets and {}; page-cache ratio missing".format(
        run.run_id, run.device, len(cache), "none matches the run's data_dir label {!r}".format(data_dir)
        if data_dir else "the run has no data_dir label to pick one"))
    return None


def collect(prom: Prometheus, run_ids: Sequence[str], since: float, until: float) -> Collected:
    runs = find_runs(prom, run_ids, since, until)
    notes = []  # type: List[str]
    if not runs:
        raise ReportError("no runs between {} and {} in Prometheus at {}; widen --since/--until or check that "
                          "the trainer is scraped".format(_iso(since), _iso(until), prom.url))
    ordered = sorted(runs.values(), key=lambda r: (min([e.start for e in r.epochs if e.start] or [0.0]), r.run_id))
    for run in ordered:
        add_exporter_data(prom, run, notes)
    return Collected(runs=ordered, notes=notes)
