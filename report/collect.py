"""Read runs, their epochs and the exporter's counters out of Prometheus and
turn them into per-epoch records (see docs/metrics.md for every name).

A run is one run_id on one board: the trainer target's (device, instance).
Its exporter series are found by the ``device`` target label Prometheus
attaches to both jobs. Epoch edges are the board's clock; they are shifted by
the board's clock offset (``edgescope_time_seconds`` minus its Prometheus
timestamp) before exporter samples, stamped by Prometheus, are read at them.
Whatever is not there or cannot be trusted stays None and is named in
``notes``: never a silent zero.
"""
import datetime
import os
import re
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from exporter.energy import LINE_SOURCES, lag_for
from exporter.ranges import NON_NEGATIVE, RATIO, board_watts, outside
from report import window
from report.configuration import VARIES
from report.prom import Labels, Prometheus, ReportError, Sample, duration, promql_string

# How far outside a run's epochs the exporter's raw samples are fetched, so
# that a sample on each side of every epoch edge is found at scrape intervals
# up to this long.
EDGE_PAD_SECONDS = 120.0
# A clock offset above this is worth a note (NTP keeps clocks within ms).
OFFSET_NOTE_SECONDS = 1.0
# An epoch edge between two exporter samples further apart than this many
# scrape intervals: the exporter or its scrapes were down there.
GAP_INTERVALS = 3.0
# Block devices stacked on others (device mapper: LUKS, LVM; md RAID): their
# reads are also counted on the disks below them.
STACKED_DISK = re.compile(r"^(dm-\d+|md\d+)$")

EPOCH_GAUGES = {
    "start": "edgescope_train_epoch_start_timestamp_seconds",
    "end": "edgescope_train_epoch_end_timestamp_seconds",
    "e2e_seconds": "edgescope_train_epoch_duration_seconds",
    "fetch_stall_seconds": "edgescope_train_epoch_fetch_stall_seconds",
    "compute_seconds": "edgescope_train_epoch_compute_seconds",
    "samples": "edgescope_train_epoch_samples",
    "trainer_energy_joules": "edgescope_train_epoch_energy_joules",
    "trainer_energy_bound_joules": "edgescope_train_epoch_energy_bound_joules",
    "trainer_power_watts": "edgescope_train_epoch_average_power_watts",
    "fetch_stall_storage_seconds": "edgescope_train_epoch_fetch_stall_storage_seconds",
    "fetch_stall_preprocess_seconds": "edgescope_train_epoch_fetch_stall_preprocess_seconds",
    "read_seconds": "edgescope_train_epoch_read_seconds",
    "preprocess_seconds": "edgescope_train_epoch_preprocess_seconds",
    "host_overhead_seconds": "edgescope_train_epoch_host_overhead_seconds",
    "loader_startup_seconds": "edgescope_train_epoch_loader_startup_seconds",
    "loader_shutdown_seconds": "edgescope_train_epoch_loader_shutdown_seconds",
    "run_read_bytes": "edgescope_train_epoch_io_read_bytes",
    "trainer_power_replayed": "edgescope_train_epoch_power_replayed",
}
PREDICTED = "edgescope_train_epoch_predicted_duration_seconds"  # {what_if}: the trainer's replays
PREDICTED_COMPUTE = "edgescope_train_epoch_predicted_compute_seconds"  # {what_if}: their compute
RUN_INFO = "edgescope_train_run_info"
CLOCK = "edgescope_time_seconds"
ENERGY = "edgescope_board_energy_joules_total"
EXPORTER_START = "edgescope_exporter_start_time_seconds"
UNCOVERED = "edgescope_board_energy_uncovered_seconds_total"
POWER = "edgescope_board_power_watts"
POWER_SOURCE_INFO = "edgescope_power_source_info"
EXPORTER_INTERVAL = "edgescope_exporter_interval_seconds"
DISK_READS = "edgescope_disk_reads_completed_total"
DISK_READ_BYTES = "edgescope_disk_read_bytes_total"
DISK_BUSY = "edgescope_disk_io_time_seconds_total"
DATASET_DISK = "edgescope_dataset_disk_info"
CACHE_RATIO = "edgescope_dataset_page_cache_ratio"
GPU_MEMORY = "edgescope_gpu_memory_bytes"
# Each per-epoch figure's physical range; average power's depends on the board (drop_unphysical).
EPOCH_RANGES = {name: RATIO if name.endswith("_ratio") else NON_NEGATIVE for name in (
    "e2e_seconds", "fetch_stall_seconds", "compute_seconds", "samples", "energy_joules", "trainer_energy_joules",
    "trainer_power_watts", "read_iops", "read_bytes_per_second", "page_cache_ratio", "page_cache_lowest_ratio",
    "fetch_stall_storage_seconds", "fetch_stall_preprocess_seconds", "read_seconds", "preprocess_seconds",
    "disk_utilisation_ratio", "host_overhead_seconds", "loader_startup_seconds", "loader_shutdown_seconds",
    "run_read_bytes", "gpu_memory_bytes", "energy_bound_joules")}
PARTS_OF_E2E = ("fetch_stall_seconds", "compute_seconds")
Series = List[Tuple[Labels, List[Sample]]]
RunKey = Tuple[str, str, str]  # run_id, device, trainer instance


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
    energy_source: Optional[str] = None  # "trainer" (its own measurement) or "exporter" (counter at the edges)
    energy_bound_joules: Optional[float] = None  # how far energy_joules can be off (None: not known)
    trainer_energy_joules: Optional[float] = None
    trainer_energy_bound_joules: Optional[float] = None
    trainer_power_watts: Optional[float] = None
    trainer_power_replayed: Optional[float] = None  # 1: the trainer's energy came from a replayed power log
    power_replayed: bool = False  # its energy and power came from a replayed recording, not this board
    read_iops: Optional[float] = None
    read_bytes_per_second: Optional[float] = None
    page_cache_ratio: Optional[float] = None  # at the epoch's end
    page_cache_lowest_ratio: Optional[float] = None  # the lowest during it: what its reads could find
    gpu_memory_bytes: Optional[float] = None  # the GPU's share of the board's RAM at the epoch's end (Jetson)
    fetch_stall_storage_seconds: Optional[float] = None  # the stall's share from file reads (trainer's split)
    fetch_stall_preprocess_seconds: Optional[float] = None  # its share from decode/augment/collate
    read_seconds: Optional[float] = None  # worker-side file read time, summed over workers
    preprocess_seconds: Optional[float] = None  # worker-side decode + augment + collate, summed over workers
    disk_utilisation_ratio: Optional[float] = None  # busiest dataset disk's time with I/O in flight / epoch time
    host_overhead_seconds: Optional[float] = None  # between steps, neither waiting for data nor compute
    loader_startup_seconds: Optional[float] = None  # iter(loader)
    loader_shutdown_seconds: Optional[float] = None  # the loader's end and its workers' teardown
    predicted: Dict[str, float] = field(default_factory=dict)  # what_if -> the epoch replayed with that change
    predicted_compute: Dict[str, float] = field(default_factory=dict)  # what_if -> its compute in that replay
    run_read_bytes: Optional[float] = None  # storage bytes the run's own processes read (/proc/<pid>/io)

    @property
    def run_read_bytes_per_second(self) -> Optional[float]:
        """The run's own storage reads over the epoch, beside the whole disk's ``read_bytes_per_second``."""
        if self.run_read_bytes is None or not self.e2e_seconds:
            return None
        return self.run_read_bytes / self.e2e_seconds

    @property
    def stall_share(self) -> Optional[float]:
        if self.fetch_stall_seconds is None or not self.e2e_seconds:
            return None
        return self.fetch_stall_seconds / self.e2e_seconds


@dataclass
class Run:
    run_id: str
    device: str
    instance: str  # the trainer target's instance (host:port): with device, which board ran it
    device_type: Optional[str]
    storage: Optional[str]
    info: Labels
    epochs: List[Epoch] = field(default_factory=list)
    power: List[Sample] = field(default_factory=list)  # board power over the run (board clock), for plots
    clock_offset_seconds: Optional[float] = None  # board clock minus the Prometheus host's
    power_replayed: bool = False  # some epoch's energy came from a replayed power log (exporter or trainer)
    exporter_replay: Optional[str] = None  # the exporter's power source that replayed a recorded log, if any
    seen: Tuple[float, float] = (0.0, 0.0)  # Prometheus time of the run's first and last run_info sample

    @property
    def key(self) -> RunKey:
        return (self.run_id, self.device, self.instance)

    @property
    def name(self) -> str:
        """How notes name the run: its id and its board."""
        return "run {} on {}".format(self.run_id, self.device or self.instance or "an unknown board")

    @property
    def model(self) -> Optional[str]:
        return self.info.get("model")

    @property
    def labels(self) -> Labels:
        """run_info's labels with the board resolved, the samples its epochs covered (``epoch_samples``,
        "varies" where they differ) and ``power_replayed`` where a recorded power log was played back: what
        report.configuration reads a configuration and how it was measured from."""
        labels = dict(self.info, device=self.device)
        if self.power_replayed:
            labels["power_replayed"] = "true"
        covered = sorted({int(round(e.samples)) for e in self.epochs if e.samples is not None})
        if covered:
            labels["epoch_samples"] = str(covered[0]) if len(covered) == 1 else VARIES
        return labels

    def to_prometheus_time(self, t: float) -> float:
        """A board-clock time as the Prometheus host's clock read it."""
        return t - (self.clock_offset_seconds or 0.0)


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


def _key(labels: Labels) -> RunKey:
    return (labels.get("run_id", ""), labels.get("device") or labels.get("device_name", ""),
            labels.get("instance", ""))


def _new_run(labels: Labels, info: Labels) -> Run:
    run_id, device, instance = _key(labels)
    return Run(run_id=run_id, device=device, instance=instance, device_type=labels.get("device_type"),
               storage=labels.get("storage"), info=info)


def find_runs(prom: Prometheus, run_ids: Sequence[str], since: float, until: float) -> Dict[RunKey, Run]:
    """The runs (run_id on one board) with trainer data in [since, until], with
    their epochs' trainer-side numbers. Raises ReportError naming any requested
    run not found."""
    matcher = _run_matcher(run_ids)
    runs = {}  # type: Dict[RunKey, Run]
    for labels, _ in _last_over(prom, RUN_INFO, matcher, since, until):
        key = _key(labels)
        if key[0] and key not in runs:
            runs[key] = _new_run(labels, {k: v for k, v in labels.items() if k not in ("__name__", "job", "instance")})
    epochs = {}  # type: Dict[Tuple[RunKey, int], Epoch]
    per_what_if = ("predicted", "predicted_compute")
    for name, metric in list(EPOCH_GAUGES.items()) + list(zip(per_what_if, (PREDICTED, PREDICTED_COMPUTE))):
        for labels, value in _last_over(prom, metric, matcher, since, until):
            key, epoch_label = _key(labels), labels.get("epoch", "")
            if not key[0] or not re.fullmatch(r"[0-9]{1,9}", epoch_label):  # an ASCII epoch number int() takes
                continue
            if name in per_what_if and (key not in runs or not labels.get("what_if")):
                continue  # a prediction alone is no epoch
            if key not in runs:  # epochs without run_info: still report them
                runs[key] = _new_run(labels, {})
            epoch = epochs.setdefault((key, int(epoch_label)),
                                      Epoch(run_id=key[0], device=key[1], epoch=int(epoch_label)))
            if name in per_what_if:
                getattr(epoch, name)[labels["what_if"]] = value
            else:
                setattr(epoch, name, value)
    unknown = [r for r in run_ids if r not in {k[0] for k in runs}]
    if unknown:
        raise ReportError("unknown run {}: Prometheus at {} has no {} with that run_id between {} and {}; "
                          "check --run or widen --since".format(", ".join(repr(u) for u in unknown), prom.url,
                                                                 RUN_INFO, _iso(since), _iso(until)))
    for (key, _), epoch in sorted(epochs.items()):
        runs[key].epochs.append(epoch)
    _add_seen(prom, runs, matcher, since, until)
    return runs


def _add_seen(prom: Prometheus, runs: Dict[RunKey, Run], matcher: str, since: float, until: float) -> None:
    """When Prometheus saw each run (its own clock): the span whose clock
    samples give the board's offset. A subquery at a step fine enough for that."""
    step = max(1.0, (until - since) / 2000.0)
    span = "[{}:{}]".format(duration(until - since), duration(step))
    seen = "timestamp({}{{{}}})".format(RUN_INFO, matcher)
    firsts = dict((_key(l), v) for l, v in prom.vector("min_over_time({}{})".format(seen, span), until))
    lasts = dict((_key(l), v) for l, v in prom.vector("max_over_time({}{})".format(seen, span), until))
    for key, run in runs.items():
        if key in firsts and key in lasts:
            run.seen = (firsts[key] - step, lasts[key] + step)


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


def _lowest_within(samples: Sequence[Sample], start: float, end: float, staleness: float) -> Optional[float]:
    """The lowest sample inside (start, end]; without one, the last before ``start`` (the exporter rescans every
    --pagecache-interval: an epoch shorter than that may show no scan of its own). Samples before the start are
    not mixed in: they show the previous epoch's reads, or the cache before an eviction at the epoch's edge."""
    inside = [v for ts, v in samples if start < ts <= end]
    return min(inside) if inside else _last_before(samples, start, staleness)


def _host(instance: str) -> str:
    return instance.rpartition(":")[0] if ":" in instance else instance


def _offsets(series: Series) -> List[float]:
    return [v - t for _, samples in series for t, v in samples]


def add_clock_offset(prom: Prometheus, run: Run, notes: List[str]) -> None:
    """The board's clock offset over the run: the median of
    ``edgescope_time_seconds`` minus its Prometheus timestamp, from the
    trainer's target, else from the board's exporter (same clock). Unknown
    (edges taken as they are) when neither publishes its clock."""
    lo, hi = run.seen
    if hi <= lo:
        return
    trainer = prom.raw("{}{{instance={},device={}}}".format(CLOCK, promql_string(run.instance),
                                                            promql_string(run.device)), lo, hi)
    offsets = _offsets(trainer) or _offsets(_board_series(prom.raw(_device_selector(CLOCK, run.device), lo, hi),
                                                          run, []))
    if not offsets:
        return
    run.clock_offset_seconds = statistics.median(offsets)
    if abs(run.clock_offset_seconds) > OFFSET_NOTE_SECONDS:
        notes.append("{}: the board's clock is {:+.1f} s off the Prometheus host's; epoch edges shifted by it "
                     "before reading exporter samples".format(run.name, run.clock_offset_seconds))


def _board_series(series: Series, run: Run, notes: List[str]) -> Series:
    """The series of the run's own board: with one exporter per device label,
    all of them; where exporters on several hosts carry the run's device label,
    only the one on the trainer's host (none, with a note, if no host matches):
    never another board's numbers."""
    instances = {labels.get("instance", "") for labels, _ in series}
    if len(instances) <= 1:
        return series
    mine = [(labels, samples) for labels, samples in series if _host(labels.get("instance", "")) == _host(run.instance)]
    if not mine:
        notes.append("{}: {} targets on other hosts are labelled device {!r} ({}), none on the trainer's host "
                     "{!r}; their data is left out".format(run.name, len(instances), run.device,
                                                          ", ".join(sorted(instances)), _host(run.instance)))
    return mine


def _fetch(prom: Prometheus, metric: str, run: Run, lo: float, hi: float, notes: List[str]) -> Series:
    return _board_series(prom.raw(_device_selector(metric, run.device), lo, hi), run, notes)


def add_exporter_data(prom: Prometheus, run: Run, notes: List[str], staleness: float = 300.0) -> None:
    """Fill energy, power, disk and page-cache numbers of every epoch of ``run``:
    the trainer's own energy measurement where it published one, else the
    exporter's counters of the run's board read at the epoch's edges."""
    for epoch in run.epochs:
        if epoch.trainer_energy_joules is not None:
            epoch.energy_joules, epoch.energy_source = epoch.trainer_energy_joules, "trainer"
            epoch.average_power_watts = epoch.trainer_power_watts
            epoch.energy_bound_joules = epoch.trainer_energy_bound_joules
            epoch.power_replayed = bool(epoch.trainer_power_replayed)
    replayed = [e.epoch for e in run.epochs if e.power_replayed]
    if replayed:
        run.power_replayed = True
        notes.append("{}: power and energy of epoch(s) {} are REPLAYED from a recorded power log by the trainer's "
                     "energy source {} (edgescope_train_epoch_power_replayed), not measured on this board".format(
                         run.name, _numbers(replayed), run.info.get("energy_source") or "(not named)"))
    timed = [e for e in run.epochs if e.start is not None and e.end is not None]
    if not timed:
        notes.append("{}: no epoch start/end timestamps; energy, disk and page cache missing".format(run.name))
        return
    lo = run.to_prometheus_time(min(e.start for e in timed)) - EDGE_PAD_SECONDS  # type: ignore
    hi = run.to_prometheus_time(max(e.end for e in timed)) + EDGE_PAD_SECONDS  # type: ignore
    energy = _fetch(prom, ENERGY, run, lo, hi, notes)
    sources = _fetch(prom, POWER_SOURCE_INFO, run, lo, hi, [])
    run.exporter_replay = ", ".join(sorted({labels.get("source") or "(not named)" for labels, _ in sources
                                            if labels.get("replay") == "true"})) or None
    reads = _fetch(prom, DISK_READS, run, lo, hi, notes)
    read_bytes = _fetch(prom, DISK_READ_BYTES, run, lo, hi, notes)
    busy = _fetch(prom, DISK_BUSY, run, lo, hi, notes)
    cache = _fetch(prom, CACHE_RATIO, run, lo, hi, notes)
    gpu_memory = _fetch(prom, GPU_MEMORY, run, lo, hi, notes)
    if not (energy or reads or cache or gpu_memory):
        if any(e.energy_source is None for e in run.epochs):
            notes.append("{}: no exporter data for device {!r} (energy, power, disk, page cache missing); is "
                         "edgescope-exporter scraped with the same device label?".format(run.name, run.device))
        return
    windows = [(e, run.to_prometheus_time(float(e.start)), run.to_prometheus_time(float(e.end)))  # type: ignore
               for e in timed]
    _add_window_energy(prom, run, [w for w in windows if w[0].energy_source is None], energy, lo, hi, notes,
                       _counter_lag(prom, run, sources, lo, hi))
    if run.exporter_replay:
        _mark_exporter_replay(run, notes)
    disks = _dataset_disks(prom, run, reads, lo, hi, notes)
    reads = [(labels, samples) for labels, samples in reads if labels.get("disk") in disks]
    read_bytes = [(labels, samples) for labels, samples in read_bytes if labels.get("disk") in disks]
    busy = [(labels, samples) for labels, samples in busy if labels.get("disk") in disks]
    cache_series = _pick_dataset(cache, run, notes, "page-cache ratio")
    partial = {}  # type: Dict[str, List[int]]
    for epoch, start, end in windows:
        epoch.read_iops = _summed_rate(reads, start, end, epoch.epoch, partial)
        epoch.read_bytes_per_second = _summed_rate(read_bytes, start, end, epoch.epoch, {})
        epoch.disk_utilisation_ratio = _busiest(busy, start, end)
        if cache_series is not None:
            epoch.page_cache_ratio = _last_before(cache_series[1], end, staleness)
            epoch.page_cache_lowest_ratio = _lowest_within(cache_series[1], start, end, staleness)
        if gpu_memory:
            epoch.gpu_memory_bytes = _last_before(gpu_memory[0][1], end, staleness)
    for disk, numbers in sorted(partial.items()):
        notes.append("{}: disk {} has no samples over all of epoch(s) {}; their read figures count the other "
                     "disks only".format(run.name, disk, _numbers(numbers)))
    first, last = lo + EDGE_PAD_SECONDS, hi - EDGE_PAD_SECONDS
    power = _board_series(prom.range(_device_selector(POWER, run.device), first, last,
                                     max(1.0, (last - first) / 600.0)), run, [])
    offset = run.clock_offset_seconds or 0.0
    run.power = [(t + offset, w) for t, w in power[0][1]] if power else []


def _mark_exporter_replay(run: Run, notes: List[str]) -> None:
    """The exporter replays a recorded power log: the epochs whose energy was read from its counter are
    replayed; those the trainer measured itself (its own --power-source) stay measured. One note names the
    exporter's replaying source and which epochs it gave."""
    from_counter = [e.epoch for e in run.epochs if e.energy_source == "exporter"]
    by_trainer = [e.epoch for e in run.epochs if e.energy_source == "trainer" and not e.power_replayed]
    for epoch in run.epochs:
        epoch.power_replayed = epoch.power_replayed or epoch.epoch in from_counter
    run.power_replayed = run.power_replayed or bool(from_counter)
    gave = ["power and energy of epoch(s) {} are REPLAYED, read from its counter".format(_numbers(from_counter))] \
        if from_counter else []
    kept = ["epoch(s) {} keep the trainer's own measurement (energy source {}), not replayed".format(
        _numbers(by_trainer), run.info.get("energy_source") or "(not named)")] if by_trainer else []
    notes.append("{}: the exporter's power source {} replays a recorded power log, not this board's power "
                 "(edgescope_power_source_info{{replay=\"true\"}}): {}".format(
                     run.name, run.exporter_replay, "; ".join(gave + kept + ["its board power curve is replayed"])))


def _numbers(values: Sequence[int]) -> str:
    return ", ".join(str(v) for v in values)


def _counter_lag(prom: Prometheus, run: Run, sources: Series, lo: float, hi: float) -> Optional[float]:
    """How long the board's energy counter may lag the board when scraped: the exporter's sampling
    interval, plus one line for a source of power lines (unknown source: assumed one); None when the
    exporter does not publish its interval."""
    intervals = [v for _, samples in _fetch(prom, EXPORTER_INTERVAL, run, lo, hi, []) for _, v in samples]
    if not intervals:
        return None
    interval = max(intervals)
    names = {labels.get("source") or LINE_SOURCES[0] for labels, _ in sources} or set(LINE_SOURCES)
    return max(lag_for(name, interval, interval) for name in names)


def _add_window_energy(prom: Prometheus, run: Run, windows: List[Tuple[Epoch, float, float]], energy: Series,
                       lo: float, hi: float, notes: List[str], lag: Optional[float]) -> None:
    """Each epoch's energy from the exporter's counter interpolated at its
    (Prometheus-time) edges, with its bound (report.window.increase_bound, from the counter's ``lag``);
    missing, with a note naming the epoch, where the exporter restarted inside it or its samples around an
    edge are too sparse."""
    if not windows:
        return
    if lag is None:
        notes.append("{}: the energy read from the exporter's counter has no bound: device {!r} publishes no {} "
                     "(an exporter older than this report)".format(run.name, run.device, EXPORTER_INTERVAL))
    if not energy:
        notes.append("{}: device {!r} has no {} (no power source on the exporter?); energy and power "
                     "missing".format(run.name, run.device, ENERGY))
        return
    if len(energy) > 1:
        notes.append("{}: device {!r} has {} energy series; using the one with labels {}".format(
            run.name, run.device, len(energy), sorted(energy[0][0].items())))
    samples = energy[0][1]
    starts = [s for _, s in _fetch(prom, EXPORTER_START, run, lo, hi, [])]
    uncovered = [s for _, s in _fetch(prom, UNCOVERED, run, lo, hi, [])]
    max_gap = GAP_INTERVALS * (window.typical_interval(samples) or 0.0)
    outside, doubted = [], []
    for epoch, start, end in windows:
        joules = window.increase(samples, start, end)
        if joules is None:
            outside.append(epoch.epoch)
            continue
        reasons = energy_doubts(samples, starts, uncovered, start, end, max_gap)
        if reasons:
            doubted.append("epoch {} ({})".format(epoch.epoch, ", ".join(reasons)))
            continue
        epoch.energy_joules, epoch.energy_source = joules, "exporter"
        epoch.energy_bound_joules = None if lag is None else window.increase_bound(samples, start, end, lag)
        if end > start:
            epoch.average_power_watts = joules / (end - start)
    if outside:
        notes.append("{}: exporter samples do not cover epoch(s) {} on both edges; their energy is "
                     "missing".format(run.name, _numbers(outside)))
    if doubted:
        notes.append("{}: energy missing for {}: the exporter's counter cannot give it".format(
            run.name, "; ".join(doubted)))


def energy_doubts(energy: Sequence[Sample], starts: Sequence[Sequence[Sample]],
                  uncovered: Sequence[Sequence[Sample]], start: float, end: float, max_gap: float) -> List[str]:
    """Why the energy counter's increase over [start, end] is not the board's
    energy then: the exporter restarted (its start time changed, or the counter
    went down), power readings missed part of it (the uncovered-seconds counter
    grew), or samples around an edge are too far apart. Interior gaps count
    only without a start time to rule out a restart in them."""
    reasons = window.doubts(energy, start, end, max_gap, edges_only=bool(starts))
    read = window.bracket(energy, start, end)
    t0, t1 = read[0][0], read[-1][0]
    if any(len({v for t, v in s if t0 <= t <= t1}) > 1 for s in starts):
        reasons.insert(0, "the exporter restarted")
    if any((window.increase(s, t0, t1) or 0.0) > 0 for s in uncovered):
        reasons.append("power readings did not cover all of it")
    return sorted(set(reasons), key=reasons.index)


def _summed_rate(series: Series, start: float, end: float, epoch: int, partial: Dict[str, List[int]]) -> Optional[float]:
    """Sum over disks of each disk's average rate in the window. A disk whose
    samples do not cover the window (it appeared or vanished meanwhile) is left
    out and recorded in ``partial``; None if no disk covers it."""
    rates = {}  # type: Dict[str, float]
    for labels, samples in series:
        r = window.rate(samples, start, end)
        if r is None:
            partial.setdefault(labels.get("disk", ""), []).append(epoch)
        else:
            rates[labels.get("disk", "")] = r
    return sum(rates.values()) if rates else None


def _busiest(series: Series, start: float, end: float) -> Optional[float]:
    """The highest average utilisation over the window among the disks that
    cover it (a sum over disks could pass 1); None if none covers it. At most 1:
    the kernel adds io_ticks in whole ticks as requests start and end, and the
    window's edges are interpolated between scrapes, so a disk busy throughout
    can count a little more than the window (1.047 seen in the quick start)."""
    rates = [r for r in (window.rate(samples, start, end) for _, samples in series) if r is not None]
    return min(max(rates), 1.0) if rates else None


def _dataset_disks(prom: Prometheus, run: Run, reads: Series, lo: float, hi: float, notes: List[str]) -> List[str]:
    """The disks whose reads count for the run: the one holding its dataset
    (``edgescope_dataset_disk_info`` matched to data_dir), else every disk
    except stacked ones (dm-*, md*) whose reads the disks under them count again."""
    info = [(labels, samples) for labels, samples in _fetch(prom, DATASET_DISK, run, lo, hi, [])
            if labels.get("disk")]
    picked = _pick_dataset(info, run, [], "")
    if picked is not None:
        return [picked[0]["disk"]]
    names = sorted({labels.get("disk", "") for labels, _ in reads})
    plain = [d for d in names if not STACKED_DISK.match(d)]
    if plain and len(plain) < len(names):
        notes.append("{}: reads summed over disks {} without the stacked device(s) {} on top of them (no {} "
                     "matches the run's data_dir)".format(run.name, ", ".join(plain),
                                                          ", ".join(d for d in names if d not in plain), DATASET_DISK))
        return plain
    return names


def _pick_dataset(series: Series, run: Run, notes: List[str], what: str) -> Optional[Tuple[Labels, List[Sample]]]:
    """The series of the run's dataset: the one whose ``dataset`` path matches
    the run's ``data_dir`` label, or the only one watched."""
    if not series:
        return None
    data_dir = run.info.get("data_dir")
    if data_dir:
        for labels, samples in series:
            if _same_path(labels.get("dataset", ""), data_dir):
                return labels, samples
    if len({labels.get("dataset") for labels, _ in series}) == 1:
        return series[0]
    notes.append("{}: device {!r} watches {} datasets and {}; {} missing".format(
        run.name, run.device, len(series), "none matches the run's data_dir label {!r}".format(data_dir)
        if data_dir else "the run has no data_dir label to pick one", what))
    return None


def check_identity(runs: Sequence[Run], notes: List[str]) -> None:
    """Note run ids seen on more than one board (each board's run is reported
    on its own) and epoch numbers missing from a run."""
    boards = {}  # type: Dict[str, List[Run]]
    for run in runs:
        boards.setdefault(run.run_id, []).append(run)
    for run_id, same in sorted(boards.items()):
        if len(same) > 1:
            notes.append("run id {} was seen on {} boards ({}); each is reported on its own row, never "
                         "merged".format(run_id, len(same), ", ".join("{} at {}".format(r.device, r.instance)
                                                                       for r in same)))
    for run in runs:
        numbers = {e.epoch for e in run.epochs}
        missing = [k for k in range(max(numbers) + 1) if k not in numbers] if numbers else []
        if missing:
            notes.append("{}: epoch{} {} missing (no trainer data for {} in Prometheus)".format(
                run.name, "s" if len(missing) > 1 else "", _numbers(missing), "them" if len(missing) > 1 else "it"))


def drop_backwards_epochs(run: Run, notes: List[str]) -> None:
    """An epoch that ends before it starts (a stepped clock, a hostile endpoint) has no window to read the
    exporter over: it is left out, with a note, instead of stopping the report."""
    backwards = [e.epoch for e in run.epochs if e.start is not None and e.end is not None and e.end < e.start]
    if backwards:
        run.epochs = [e for e in run.epochs if e.epoch not in backwards]
        notes.append("{}: epoch(s) {} skipped: each ends before it starts (the board's clock stepped back?)"
                     .format(run.name, _numbers(backwards)))


def drop_unphysical(run: Run, notes: List[str]) -> None:
    """Every per-epoch figure outside its physical range (exporter/ranges.py) becomes missing, one note per
    figure: averaged in, a 500 % disk or a negative epoch would pass for a measurement. Power is bounded
    by the board's type, and energy goes with it."""
    ranges = dict(EPOCH_RANGES, average_power_watts=board_watts(run.device_type))
    bad = {}  # type: Dict[str, List[Tuple[int, float, str]]]
    for e in run.epochs:
        for name, allowed in ranges.items():
            value = getattr(e, name)
            why = None if value is None else outside(value, allowed)
            if why:
                bad.setdefault(name, []).append((e.epoch, value, why))
                setattr(e, name, None)
                if name == "average_power_watts":
                    e.energy_joules = None
        for name in ("predicted", "predicted_compute"):  # a what-if's epoch is an epoch: a prediction of 1e300 s
            for what_if, value in sorted(getattr(e, name).items()):  # or -5 s is no prediction to print
                why = outside(value, NON_NEGATIVE)
                if why:
                    bad.setdefault("{}{{what_if={}}}".format(name, what_if), []).append((e.epoch, value, why))
                    del getattr(e, name)[what_if]
        for name in PARTS_OF_E2E:  # each is a part of the epoch's time: longer than the whole is no measurement
            value = getattr(e, name)
            if value is not None and e.e2e_seconds is not None and value > e.e2e_seconds * (1 + 1e-9):
                bad.setdefault(name, []).append((e.epoch, value, "above e2e_seconds"))
                setattr(e, name, None)
    for name, found in bad.items():
        notes.append("{}: {} {} in epoch(s) {} (such as {:g}), which no board produces; shown as missing".format(
            run.name, name, found[0][2], _numbers([k for k, _, _ in found]), found[0][1]))


def collect(prom: Prometheus, run_ids: Sequence[str], since: float, until: float) -> Collected:
    runs = find_runs(prom, run_ids, since, until)
    notes = []  # type: List[str]
    if not runs:
        raise ReportError("no runs between {} and {} in Prometheus at {}; widen --since/--until or check that "
                          "the trainer is scraped".format(_iso(since), _iso(until), prom.url))
    ordered = sorted(runs.values(), key=lambda r: (r.seen[0], r.run_id, r.device, r.instance))
    check_identity(ordered, notes)
    for run in ordered:
        drop_backwards_epochs(run, notes)
        add_clock_offset(prom, run, notes)
        add_exporter_data(prom, run, notes)
        drop_unphysical(run, notes)
    return Collected(runs=ordered, notes=list(dict.fromkeys(notes)))  # each note once, in order
