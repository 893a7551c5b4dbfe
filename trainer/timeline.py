"""An epoch's loader timeline, and what-ifs replayed on it.

``Timeline`` keeps, per batch, what ``StepMeter`` saw (which worker made it, its read and preprocess seconds,
the worker's CPU seconds, when it was ready, when the main process began and ended waiting for it, its step)
in bounded columns. ``what_ifs`` replays the epoch through the DataLoader's own scheduling (round-robin over
workers, prefetch factor x workers indices outstanding, in-order delivery, the main process computing) with
one cost changed, a discrete-event model rather than a ratio. No torch here: the report reads timelines too.
"""
import json
import math
import os
from array import array
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from exporter import atomicfile

MAX_BATCHES = 200000  # ~14 columns x 8 bytes: about 22 MB at most per epoch; past it the timeline is cut
COLUMNS = ("worker", "began", "ready", "read_s", "preprocess_s", "cpu_s", "read_bytes", "wait_began",
           "wait_ended", "step_began", "step_ended", "compute_s", "fetch_stall_s", "storage_share")
VERSION = 1


class Timeline:
    """One window's batches, oldest first; times are CLOCK_MONOTONIC seconds (one clock for all processes)."""

    def __init__(self) -> None:
        self.columns = {name: array("d") for name in COLUMNS}
        self.workers = 0
        self.prefetch_factor = 0
        self.startup = None  # type: Optional[Tuple[float, float]]
        self.shutdown = None  # type: Optional[Tuple[float, float]]
        self.truncated = False
        self.complete = True  # every batch carried its loader's stamps

    def __len__(self) -> int:
        return len(self.columns["wait_began"])

    def add(self, timing: Any) -> None:
        """A ``trainer.meter.BatchTiming`` whose wait was split."""
        if len(self) >= MAX_BATCHES:
            self.truncated = True
            return
        host, load = timing.host, timing.load
        if host is None:
            self.complete = False
            return
        if load is None or load.began is None or load.ready is None or load.cpu_s is None:
            self.complete = False
            load_values = (-1.0, math.nan, math.nan, math.nan, math.nan, math.nan, 0.0)
        else:
            load_values = (float(load.worker), load.began, load.ready, load.read_s, load.preprocess_s, load.cpu_s,
                           float(load.read_bytes))
        values = load_values + (host.wait_began, host.wait_ended, host.step_began, host.step_ended, timing.compute_s,
                                timing.fetch_stall_s, math.nan if timing.storage_share is None else timing.storage_share)
        for name, value in zip(COLUMNS, values):
            self.columns[name].append(value)

    def loader_event(self, what: str, began: float, ended: float, workers: int, prefetch_factor: int) -> None:
        """The loader's start-up or shutdown interval, and its shape."""
        self.workers, self.prefetch_factor = workers, prefetch_factor
        setattr(self, what, (began, ended))

    def to_dict(self) -> Dict[str, Any]:
        return {"version": VERSION, "workers": self.workers, "prefetch_factor": self.prefetch_factor,
                "startup": self.startup, "shutdown": self.shutdown, "truncated": self.truncated,
                "complete": self.complete,
                "batches": {name: [None if math.isnan(v) else v for v in column]
                            for name, column in self.columns.items()}}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Timeline":
        """A timeline as ``to_dict`` wrote it; ValueError names what is wrong."""
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise ValueError("not an edgescope timeline (version {})".format(VERSION))
        timeline = cls()
        try:
            timeline.workers, timeline.prefetch_factor = int(data["workers"]), int(data["prefetch_factor"])
            if timeline.workers < 0 or timeline.prefetch_factor < 0:
                raise ValueError("negative workers or prefetch factor")
            for what in ("startup", "shutdown"):
                if data[what] is not None:
                    began, ended = (_finite(x) for x in data[what])
                    setattr(timeline, what, (began, ended))
            timeline.truncated, timeline.complete = bool(data["truncated"]), bool(data["complete"])
            lengths = set()
            for name in COLUMNS:
                values = data["batches"][name]
                timeline.columns[name] = array("d", (math.nan if v is None else _finite(v) for v in values))
                lengths.add(len(values))
        except (KeyError, TypeError, ValueError, OverflowError) as error:  # OverflowError: int(1e999)
            raise ValueError("malformed timeline ({})".format(error))
        if len(lengths) > 1:
            raise ValueError("malformed timeline (columns of different lengths)")
        return timeline


def _finite(value: Any) -> float:
    """A number of the file: to_dict writes NaN as null, so NaN or an infinity there is not one it wrote."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("{} is not a finite number".format(value))
    return number


def load(path: str) -> Timeline:
    with open(path, encoding="utf-8") as f:
        return Timeline.from_dict(json.load(f))


class Replayable(NamedTuple):
    """One epoch reduced to what the replay needs, times relative to the end of the loader's start-up."""
    workers: int
    prefetch_factor: int
    assigned: List[int]  # the worker that made each batch
    read: List[float]
    preprocess: List[float]  # the making's wall time that was not reading
    cpu: List[float]
    read_bytes: float
    delivery: List[float]  # ready (or wait start) to the main process having it (queue, copy to the device)
    before_step: List[float]  # the batch in hand to its step's start
    compute: List[float]  # the step, on the host
    after_step: List[float]  # the step's end to the wait for the next batch (the last: to the loader's end)
    boot: List[float]  # each worker's first batch began this long after start-up ended
    span: float  # measured: start-up end to the loader's end
    startup_s: float  # iter(loader): forking the workers
    shutdown_s: float  # the loader's end: the workers' teardown


def replayable(timeline: Timeline) -> Tuple[Optional[Replayable], str]:
    """The timeline ready for replay, or None and why not."""
    c = timeline.columns
    n = len(timeline)
    if n == 0:
        return None, "no batches"
    if timeline.truncated:
        return None, "timeline cut at {} batches".format(MAX_BATCHES)
    if not timeline.complete:
        return None, "the loader gave no timestamps (not trainer.data.make_loader(timed=True))"
    t0 = c["wait_began"][0]
    end = timeline.shutdown[0] if timeline.shutdown else c["step_ended"][n - 1]  # hook-driven loops: no shutdown
    ready = c["ready"]
    workers = timeline.workers
    boot = [0.0] * workers
    seen = set()  # type: set
    for i in range(n):
        w = int(c["worker"][i])
        if workers and w not in seen and 0 <= w < workers:
            seen.add(w)
            boot[w] = max(c["began"][i] - t0, 0.0)
    waits = c["wait_began"]
    return Replayable(
        workers=workers, prefetch_factor=timeline.prefetch_factor,
        assigned=[int(w) for w in c["worker"]] if workers else [0] * n,
        read=list(c["read_s"]),
        preprocess=[max(ready[i] - c["began"][i] - c["read_s"][i], 0.0) for i in range(n)],
        cpu=list(c["cpu_s"]), read_bytes=sum(c["read_bytes"]),
        delivery=[max(c["wait_ended"][i] - max(ready[i], waits[i]), 0.0) for i in range(n)],
        before_step=[max(c["step_began"][i] - c["wait_ended"][i], 0.0) for i in range(n)],
        compute=[max(c["step_ended"][i] - c["step_began"][i], 0.0) for i in range(n)],
        after_step=[max((waits[i + 1] if i + 1 < n else end) - c["step_ended"][i], 0.0) for i in range(n)],
        boot=boot, span=end - t0,
        startup_s=timeline.startup[1] - timeline.startup[0] if timeline.startup else 0.0,
        shutdown_s=timeline.shutdown[1] - timeline.shutdown[0] if timeline.shutdown else 0.0), ""


def replay(r: Replayable, workers: int, make: Sequence[float], compute: Sequence[float],
           assigned: Optional[Sequence[int]] = None) -> float:
    """The loop's seconds from start-up end to the loader's end with ``workers`` making batch i in ``make[i]``
    and the main process computing it in ``compute[i]``: DataLoader's scheduling."""
    n = len(make)
    if workers == 0:  # the main process makes each batch inside its wait
        return sum(make[i] + r.delivery[i] + r.before_step[i] + compute[i] + r.after_step[i] for i in range(n))
    boot = max(r.boot) if r.boot else 0.0
    free = [r.boot[w] if w < len(r.boot) else boot for w in range(workers)]
    outstanding = r.prefetch_factor * workers
    received = [0.0] * n
    t = 0.0
    for i in range(n):
        w = assigned[i] if assigned is not None else i % workers
        sent = 0.0 if i < outstanding else received[i - outstanding]
        done = max(free[w], sent) + make[i]
        free[w] = done
        received[i] = max(t, done + r.delivery[i])
        t = received[i] + r.before_step[i] + compute[i] + r.after_step[i]
    return t


def storage_speed(r: Replayable) -> Optional[float]:
    """Bytes per second the storage served to one reader at a time: the epoch's bytes over its read seconds,
    the reads' mean concurrency taken out (readers sharing a disk each see a part of it)."""
    total = sum(r.read)
    if r.read_bytes <= 0 or total <= 0 or r.span <= 0:
        return None
    return r.read_bytes / (total / max(1.0, total / r.span))


def _doubled(r: Replayable, cpus: int, main_cpu_s: float, storage_scales: bool) -> Tuple[float, str, float]:
    """The epoch's loop with twice the workers, plus the extra start-up and shutdown of forking and ending
    twice as many.

    CPU: the main process's steps and the workers' CPU seconds share the machine's CPUs (the affinity mask):
    while more processes are runnable than there are CPUs, each runs that much slower, the steps included (an
    oversubscription already in the measured epoch is taken out first). Reads either share the storage, which
    serves no more than one reader's worth at a time (an SD card, a throttled disk), or, ``storage_scales``, take
    as long as measured (page cache, NVMe, network storage serving more readers at once): one epoch cannot tell
    which, so both are predicted. The factors are solved together with the replay (a fixed point). Returns the
    epoch's time, the basis and the steps' compute over the measured (their share of the CPUs changed)."""
    # the main process's CPUs while it steps: ~1 for a CPU step on one thread, more with intra-op threads, little
    # for a GPU's (its host work); from its CPU time over the epoch
    main_cores = main_cpu_s / sum(r.compute) if sum(r.compute) > 0 else 0.0
    slowed = min(main_cores, 1.0)  # the share of a step that waits when the CPUs are oversubscribed
    runnable = (sum(r.compute) * main_cores + sum(r.preprocess)) / r.span  # CPUs wanted, on average
    measured_sharing = max(1.0, runnable / cpus)
    read_sharing = 1.0 if storage_scales else max(1.0, sum(r.read) / r.span)
    alone_read = [x / read_sharing for x in r.read]
    alone_compute = [c / (1 + (measured_sharing - 1) * slowed) for c in r.compute]
    other = [max(p - c * measured_sharing, 0.0) for p, c in zip(r.preprocess, r.cpu)]  # not CPU, not reading
    workers = 2 * r.workers
    s_read = s_cpu = 1.0
    span, compute = r.span, r.compute
    for _ in range(60):
        make = [a * s_read + c * s_cpu + o for a, c, o in zip(alone_read, r.cpu, other)]
        compute = [c * (1 + (s_cpu - 1) * slowed) for c in alone_compute]
        span = replay(r, workers, make, compute)
        if not storage_scales:
            s_read = (s_read + max(1.0, sum(alone_read) * s_read / span)) / 2
        s_cpu = (s_cpu + max(1.0, (sum(compute) * main_cores + sum(r.cpu) * s_cpu) / span / cpus)) / 2
    return span + r.startup_s + r.shutdown_s, (
        "{} -> {} workers on {} CPUs: CPU work x{:.2f} from sharing (measured x{:.2f}), reads x{:.2f}{}, "
        "start-up and shutdown doubled".format(
            r.workers, workers, cpus, s_cpu, measured_sharing, s_read,
            " (storage serving more readers as fast)" if storage_scales
            else " (storage serving one reader's worth at a time)")), \
        sum(compute) / sum(r.compute) if sum(r.compute) > 0 else 1.0


class Prediction(NamedTuple):
    seconds: Optional[float]  # the epoch's predicted wall time; None: not predicted, ``basis`` says why
    basis: str
    # the epoch's compute under the change: as measured where the change leaves the steps alone, else scaled
    # by the replay (workers sharing the CPUs, compute_speedup); a measured run of the change checks against
    # it how far the machine's own speed moved (report.whatif)
    compute_seconds: Optional[float] = None


def what_ifs(timeline: Timeline, epoch_s: float, cpus: int, main_cpu_s: float,
             storage_bps: Sequence[float] = (), compute_speedup: Sequence[float] = (2.0,),
             free_memory_bytes: Optional[float] = None,
             dataset_bytes: Optional[float] = None, compute_s: Optional[float] = None) -> Dict[str, Prediction]:
    """The epoch's wall time replayed with one change each: ``dataset_cached`` (reads take no time),
    ``workers_doubled`` (storage serving one reader's worth at a time) and ``workers_doubled_storage_scales``
    (reads as fast as measured), ``storage_bps=N`` (reads x measured speed / N), ``compute_speedup=K`` (steps / K).
    A prediction is the measured epoch minus the replayed loop as measured plus the replayed loop changed, so
    the model's own error on this epoch cancels; start-up and shutdown stay as measured. With the epoch's
    measured ``compute_s`` each prediction also carries its compute."""
    names = ["dataset_cached", "workers_doubled", "workers_doubled_storage_scales"] + ["storage_bps={:g}".format(n) for n in storage_bps] \
        + ["compute_speedup={:g}".format(k) for k in compute_speedup]
    r, why = replayable(timeline)
    if r is None:
        return {name: Prediction(None, why) for name in names}
    assigned = r.assigned if r.workers else None
    measured = replay(r, r.workers, [a + b for a, b in zip(r.read, r.preprocess)], r.compute, assigned)

    def predicted(loop: float, basis: str, compute_ratio: float = 1.0) -> Prediction:
        return Prediction(max(epoch_s - measured + loop, 0.0), basis,
                          None if compute_s is None else compute_s * compute_ratio)

    out = {}
    reads = sum(r.read)
    if dataset_bytes is not None and free_memory_bytes is not None and dataset_bytes > free_memory_bytes:
        out["dataset_cached"] = Prediction(None, "does not fit: {:.2f} GiB dataset, {:.2f} GiB free".format(
            dataset_bytes / 2 ** 30, free_memory_bytes / 2 ** 30))
    else:
        out["dataset_cached"] = predicted(replay(r, r.workers, r.preprocess, r.compute, assigned),
                                          "reads ({:.3g} s over the workers) taken out".format(reads))
    for name, scales in (("workers_doubled", False), ("workers_doubled_storage_scales", True)):
        if r.workers == 0:
            out[name] = Prediction(None, "workers 0: loading in the main process, nothing to double")
        else:
            out[name] = predicted(*_doubled(r, cpus, main_cpu_s, scales))
    speed = storage_speed(r)
    for n in storage_bps:
        name = "storage_bps={:g}".format(n)
        if speed is None:
            out[name] = Prediction(None, "no file reads were timed in this epoch")
            continue
        make = [a * speed / n + b for a, b in zip(r.read, r.preprocess)]
        out[name] = predicted(replay(r, r.workers, make, r.compute, assigned),
                              "reads x {:.3g} (measured {:.3g} MB/s a reader)".format(speed / n, speed / 1e6))
    for k in compute_speedup:
        out["compute_speedup={:g}".format(k)] = predicted(
            replay(r, r.workers, [a + b for a, b in zip(r.read, r.preprocess)], [c / k for c in r.compute],
                   assigned), "steps / {:g}".format(k), 1 / k)
    return out


def origin(timeline: Timeline) -> float:
    """The epoch's first stamp: where its pictures start the clock. The loader's start-up begins the window, but a
    timeline without one starts at its first making or wait (workers begin before ``iter()`` returns)."""
    c = timeline.columns
    stamps = [x for name in ("began", "wait_began") for x in c[name] if not math.isnan(x)]
    return min(stamps + list(timeline.startup or ()), default=0.0)


def trace_events(timeline: Timeline, name: str = "epoch") -> List[Dict[str, Any]]:
    """The timeline as Chrome trace events (Perfetto's UI and chrome://tracing open them): one lane per worker
    (read, then preprocess: their sums, in order, inside the batch's making), the main process's waits and steps,
    the loader's start-up and shutdown. Microseconds from ``origin``; unknown figures are null (NaN is not JSON)."""
    c = timeline.columns
    start = origin(timeline)
    events = [{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": name}}]
    for tid, lane in enumerate(["main process"] + ["worker {}".format(w) for w in range(timeline.workers)]):
        events += [{"ph": "M", "name": "thread_name", "pid": 1, "tid": tid, "args": {"name": lane}},
                   {"ph": "M", "name": "thread_sort_index", "pid": 1, "tid": tid, "args": {"sort_index": tid}}]

    def span(tid: int, label: str, began: float, ended: float, **args: float) -> None:
        if ended > began:  # False for NaN too
            events.append({"ph": "X", "pid": 1, "tid": tid, "name": label, "ts": (began - start) * 1e6,
                           "dur": (ended - began) * 1e6,
                           "args": {k: None if math.isnan(v) else v for k, v in args.items()}})

    for what in ("startup", "shutdown"):
        interval = getattr(timeline, what)
        if interval is not None:
            span(0, "loader " + what, *interval)
    for i in range(len(timeline)):
        span(0, "wait", c["wait_began"][i], c["wait_ended"][i], batch=i, storage_share=c["storage_share"][i])
        span(0, "compute", c["step_began"][i], c["step_ended"][i], batch=i)
        worker, began, read = c["worker"][i], c["began"][i], c["read_s"][i]
        tid = int(worker) + 1 if worker >= 0 else 0  # the main process (-1, or unknown) makes it inside its wait
        span(tid, "read", began, began + read, batch=i, bytes=c["read_bytes"][i])
        span(tid, "preprocess", began + read, c["ready"][i], batch=i, cpu_s=c["cpu_s"][i])
    return events


def window_what_ifs(window: Any, main_cpu_s: float, storage_bps: Sequence[float] = (),
                    compute_speedup: Sequence[float] = (2.0,),
                    dataset_bytes: Optional[float] = None) -> Dict[str, Prediction]:
    """``what_ifs`` of a ``trainer.meter.Window`` on this machine (its CPUs and free memory now); none without a
    timeline."""
    if window.timeline is None:
        return {}
    return what_ifs(window.timeline, window.duration_s, usable_cpus(), main_cpu_s, storage_bps, compute_speedup,
                    available_memory(), dataset_bytes, window.compute_s)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: a container or taskset may allow fewer)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def available_memory(meminfo: str = "/proc/meminfo") -> Optional[float]:
    """Bytes the kernel says can be had without swapping (MemAvailable; on a Jetson the GPU shares this RAM)."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def run_folder(directory: str, run_id: str) -> str:
    """Where a run's epochs are written and read: one folder per run, whatever its id holds."""
    return os.path.join(directory, run_id.replace(os.sep, "_"))


def write_timeline(directory: str, run_id: str, epoch: int, window: Any, main_cpu_s: float) -> str:
    """DIR/RUN_ID/epoch-N.json, whole or not at all (``exporter.atomicfile``); an OSError names the file."""
    folder = run_folder(directory, run_id)
    path = os.path.join(folder, "epoch-{}.json".format(epoch))
    data = dict(window.timeline.to_dict(), run_id=run_id, epoch=epoch, duration_s=window.duration_s,
                main_cpu_s=main_cpu_s, cpu_count=usable_cpus())
    os.makedirs(folder, exist_ok=True)
    atomicfile.write_bytes(path, json.dumps(data).encode("utf-8"))
    return path
