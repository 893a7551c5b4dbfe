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
from exporter.readfile import read_regular
from trainer.afterwait import AfterWait
from trainer.machine import Machine, available_memory, usable_cpus

MAX_BATCHES = 200000  # ~19 columns x 8 bytes: about 30 MB at most per epoch; past it the timeline is cut
MAX_FILE_BYTES = 128 << 20  # MAX_BATCHES rows of 19 JSON numbers (~25 characters each) are ~95 MB
# What a file's counts may claim (the trainer's --workers and --prefetch-factor ranges): a 1.4 KB file claiming
# 20,000 workers took 4-6 GB to replay and draw
MAX_WORKERS = 1024
MAX_PREFETCH_FACTOR = 1000
COLUMNS = ("worker", "began", "ready", "read_s", "preprocess_s", "cpu_s", "read_bytes", "wait_began",
           "wait_ended", "step_began", "step_ended", "compute_s", "fetch_stall_s", "storage_share", "read_cpu_s",
           "io_read_bytes", "io_rchar", "private_bytes", "run_delay_s")
VERSION = 2
READABLE = (1, 2)  # version 1 lacks the reads' CPU, the makers' I/O, memory and waits for a CPU, and the machine


class Timeline:
    """One window's batches, oldest first; times are CLOCK_MONOTONIC seconds (one clock for all processes), and
    the machine it ran on (``trainer.machine.Machine``, set when the window ends)."""

    def __init__(self) -> None:
        self.columns = {name: array("d") for name in COLUMNS}
        self.workers = 0
        self.prefetch_factor = 0
        self.startup = None  # type: Optional[Tuple[float, float]]
        self.shutdown = None  # type: Optional[Tuple[float, float]]
        self.truncated = False
        self.complete = True  # every batch carried its loader's stamps
        self.machine = None  # type: Optional[Machine]
        self.after_wait = None  # type: Optional[AfterWait]  # the probe between epochs (trainer.afterwait), if any

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
            load = None
        else:
            load_values = (float(load.worker), load.began, load.ready, load.read_s, load.preprocess_s, load.cpu_s,
                           float(load.read_bytes))
        values = load_values + (host.wait_began, host.wait_ended, host.step_began, host.step_ended, timing.compute_s,
                                timing.fetch_stall_s, _number(timing.storage_share),
                                _number(None if load is None else load.read_cpu_s),
                                _number(None if load is None or load.io is None else load.io[0]),
                                _number(None if load is None or load.io is None else load.io[1]),
                                _number(None if load is None else load.private_bytes),
                                _number(None if load is None else load.run_delay_s))
        for name, value in zip(COLUMNS, values):
            self.columns[name].append(value)

    def loader_event(self, what: str, began: float, ended: float, workers: int, prefetch_factor: int) -> None:
        """The loader's start-up or shutdown interval, and its shape."""
        self.workers, self.prefetch_factor = workers, prefetch_factor
        setattr(self, what, (began, ended))

    def to_dict(self) -> Dict[str, Any]:
        return {"version": VERSION, "workers": self.workers, "prefetch_factor": self.prefetch_factor,
                "startup": self.startup, "shutdown": self.shutdown, "truncated": self.truncated,
                "complete": self.complete, "machine": None if self.machine is None else self.machine.to_dict(),
                "after_wait": None if self.after_wait is None else self.after_wait.to_dict(),
                "batches": {name: [None if math.isnan(v) else v for v in column]
                            for name, column in self.columns.items()}}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Timeline":
        """A timeline as ``to_dict`` wrote it (this version or an older one: what it lacks is unknown);
        ValueError names what is wrong."""
        if not isinstance(data, dict) or data.get("version") not in READABLE:
            raise ValueError("not an edgescope timeline (version {})".format(" or ".join(map(str, READABLE))))
        timeline = cls()
        try:
            timeline.workers, timeline.prefetch_factor = int(data["workers"]), int(data["prefetch_factor"])
            if not (0 <= timeline.workers <= MAX_WORKERS and 0 <= timeline.prefetch_factor <= MAX_PREFETCH_FACTOR):
                raise ValueError("workers {} or prefetch factor {} outside 0..{} and 0..{}".format(
                    timeline.workers, timeline.prefetch_factor, MAX_WORKERS, MAX_PREFETCH_FACTOR))
            for what in ("startup", "shutdown"):
                if data[what] is not None:
                    began, ended = (_finite(x) for x in data[what])
                    setattr(timeline, what, (began, ended))
            timeline.truncated, timeline.complete = bool(data["truncated"]), bool(data["complete"])
            if data.get("machine") is not None:
                timeline.machine = Machine.from_dict(data["machine"])
            elif data.get("cpu_count") is not None and data.get("main_cpu_s") is not None:  # version 1's file
                timeline.machine = Machine(int(data["cpu_count"]), _finite(data["main_cpu_s"]))
            if data.get("after_wait") is not None:
                timeline.after_wait = AfterWait.from_dict(data["after_wait"])
            batches = data["batches"]
            n = len(batches["wait_began"])
            if n > MAX_BATCHES:
                raise ValueError("more than {} batches".format(MAX_BATCHES))
            for name in COLUMNS:
                values = batches[name] if name in batches or data["version"] == VERSION else [None] * n
                timeline.columns[name] = array("d", (math.nan if v is None else _finite(v) for v in values))
                if len(values) != n:
                    raise ValueError("columns of different lengths")
        except (KeyError, TypeError, ValueError, OverflowError) as error:  # OverflowError: int(1e999)
            raise ValueError("malformed timeline ({})".format(error))
        return timeline


def _number(value: Optional[float]) -> float:
    return math.nan if value is None else float(value)


def _finite(value: Any) -> float:
    """A number of the file: to_dict writes NaN as null, so NaN or an infinity there is not one it wrote."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("{} is not a finite number".format(value))
    return number


def read_json(path: str) -> Any:
    """An epoch file's JSON, read within bounds (``exporter.readfile``): OSError, or a ValueError naming why."""
    return json.loads(read_regular(path, MAX_FILE_BYTES).decode("utf-8"))


def load(path: str) -> Timeline:
    return Timeline.from_dict(read_json(path))


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
    read_cpu: List[float]  # the CPU seconds of each batch's reads, inside ``cpu`` (0 where not recorded)
    device_bytes: Optional[float]  # the makers' bytes from storage over the epoch (/proc/<pid>/io read_bytes)
    rchar: Optional[float]  # the bytes their read calls returned (rchar); both None where not recorded
    worker_memory: List[float]  # each worker's largest private memory (0 where not recorded)
    run_delay: Optional[List[float]]  # each making's wait for a CPU; None where not recorded
    after_wait: Optional[AfterWait]  # how much slower the makings' CPU ran after their waits (None: not probed)


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
    memory = [0.0] * workers
    seen = set()  # type: set
    for i in range(n):
        w = int(c["worker"][i])
        if workers and 0 <= w < workers:
            if w not in seen:
                seen.add(w)
                boot[w] = max(c["began"][i] - t0, 0.0)
            if not math.isnan(c["private_bytes"][i]):
                memory[w] = max(memory[w], c["private_bytes"][i])
    waits = c["wait_began"]
    io_known = not any(math.isnan(x) for name in ("io_read_bytes", "io_rchar") for x in c[name])
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
        shutdown_s=timeline.shutdown[1] - timeline.shutdown[0] if timeline.shutdown else 0.0,
        read_cpu=[0.0 if math.isnan(x) else min(x, cpu) for x, cpu in zip(c["read_cpu_s"], c["cpu_s"])],
        device_bytes=sum(c["io_read_bytes"]) if io_known else None,
        rchar=sum(c["io_rchar"]) if io_known else None, worker_memory=memory,
        run_delay=None if any(math.isnan(x) for x in c["run_delay_s"]) else list(c["run_delay_s"]),
        after_wait=timeline.after_wait), ""


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


def _piece(wall: float, cpu: float, sharing: float) -> Tuple[float, float]:
    """A measured wall time split into (what was not CPU: a wait for the device, a GPU, a sleep; what its CPU
    seconds take with the CPUs to itself). Its CPU ran ``sharing`` times slower than alone; CPU seconds beyond
    what one thread fits in the wall ran on several threads at once."""
    if cpu * sharing <= wall:
        return wall - cpu * sharing, cpu
    return 0.0, wall / sharing


class Costs(NamedTuple):
    """Each batch's costs as the CPU model holds them, alone on the CPUs: its making's wait for the device (the
    part of its reads that was neither CPU nor a wait for a CPU), its other waits and its CPU; its step's waits and
    CPU. CPU parts are wall seconds with the CPUs to themselves."""
    device_wait: List[float]
    make_wait: List[float]
    make_cpu: List[float]  # wall seconds at no sharing
    step_wait: List[float]
    step_cpu: List[float]  # wall seconds at no sharing
    # how much slower than alone each making's CPU ran in the measured epoch ((CPU + its wait for a CPU) / CPU;
    # the steps': CpuModel.sharing): where the run's threads met each other or a tenant only now and then, an
    # epoch-wide share misses it; a replay never runs a piece faster than that
    make_sharing: List[float]


class CpuModel:
    """The machine behind every what-if: the run's threads (its main process's, its workers') and the other
    tenants' share the affinity mask's CPUs, each runnable thread getting an even share: while more want a CPU than
    there are, each runs that much slower, the steps included. The other tenants are as many runnable threads as
    explain what they took (``Machine.others_cores``) beside the run as measured: where the CPUs were never idle
    they would have taken more, had the run wanted less. The measured epoch is taken apart at the sharing it had;
    a changed one is replayed at the sharing its own CPU work makes (a fixed point), each piece never faster than
    it ran in the measured epoch (the sharing it met there is not added again: the replay of the measured epoch is
    then the epoch, and a prediction does not carry those waits twice, once as the model's error and once in the
    changed epoch's sharing) but for what it met that the change makes shorter: with steps K times faster, a
    making meets 1/K of its measured waits for a CPU. A change that spreads the run's threads apart (slower
    storage) keeps them: such a prediction may come out slow by those waits."""

    def __init__(self, r: Replayable, machine: Machine) -> None:
        self.r = r
        self.machine = machine
        self.making_cpu_s = sum(r.cpu)
        # without workers the main process makes the batches: their CPU is in its own
        self.workers_cpu_s = 0.0 if r.workers == 0 else max(_known(machine.workers_cpu_s), self.making_cpu_s)
        self.step_cpu_s = max(machine.main_cpu_s - (self.making_cpu_s if r.workers == 0 else 0.0), 0.0)
        others = machine.others_cores(self.workers_cpu_s)
        self.had = max(machine.cpus - others, 1e-3)  # the cores the run had in the measured epoch
        making = [a + b for a, b in zip(r.read, r.preprocess)]
        # the main process's slowdown from sharing, as its thread measured it or estimated from the walls
        self.sharing = machine.main_sharing if machine.main_sharing >= 1 else self._estimated_sharing()
        if r.run_delay is not None:  # the makers' own waits for a CPU
            delay = [min(d, max(m - c, 0.0)) for d, m, c in zip(r.run_delay, making, r.cpu)]
        else:
            delay = [min(c * (self.sharing - 1), max(m - c, 0.0)) for m, c in zip(making, r.cpu)]
        # the run's threads wanting a CPU on average (the main thread's waits are in its sharing, a worker's in
        # its delays), and the tenants' that took ``others`` of the CPUs beside them
        workers_wanting = self.making_cpu_s + sum(delay) if r.workers else 0.0
        wanting = (machine.main_cpu_s * self.sharing + workers_wanting) / r.span if r.span > 0 else 0.0
        self.tenants = others * max(1.0, wanting / self.had)
        # a making's wall is its CPU, its wait for a CPU, and the rest, blocked: on the device while reading
        blocked = [max(m - c - d, 0.0) for m, c, d in zip(making, r.cpu, delay)]
        device = [min(b, max(w - c, 0.0)) for b, w, c in zip(blocked, r.read, r.read_cpu)]
        steps = sum(r.compute)
        main_share = self.step_cpu_s / steps if steps > 0 else 0.0
        self.main_threads = max(1.0, main_share * self.sharing)  # the threads a step runs on at once
        step = [_piece(k, k * main_share, self.sharing) for k in r.compute]
        make_cpu = [min(c, m) for c, m in zip(r.cpu, making)]
        self.costs = Costs(device, [b - w for b, w in zip(blocked, device)], make_cpu, [x[0] for x in step],
                           [x[1] for x in step], [1 + d / c if c > 0 else 1.0 for c, d in zip(make_cpu, delay)])
        self.other_cpu = [max(m - rc, 0.0) for m, rc in zip(make_cpu, r.read_cpu)]  # a making's CPU beside its reads'
        # what that would not have cost without its waits (trainer.afterwait: the epoch's per sample against the
        # same makings back to back)
        slowdown = r.after_wait.slowdown() if r.after_wait is not None else 1.0
        self.after_wait_cpu = [o * (1 - 1 / slowdown) if d > 0 else 0.0 for o, d in zip(self.other_cpu, device)]
        # storage serving one reader's worth at a time: the measured waits hold that many readers at once
        self.read_sharing = max(1.0, sum(device) / r.span) if r.span > 0 else 1.0

    def _estimated_sharing(self) -> float:
        """Where the main thread did not measure its waits for a CPU: the processes wanting one on average over the
        cores. A making's wall beyond its reads' waits counts as wanting one; the main process wants one for its
        CPU seconds stretched as the makings' were (its step's wall would count a GPU's time too)."""
        r = self.r
        rest_cpu = sum(max(c - rc, 0.0) for c, rc in zip(r.cpu, r.read_cpu))
        rest = sum(r.preprocess)
        stretch = max(1.0, rest / rest_cpu) if rest_cpu > 0 else 1.0
        main = min(max(sum(r.compute), self.step_cpu_s), self.step_cpu_s * stretch)
        wanting = rest + sum(r.read_cpu) + main
        return max(1.0, wanting / r.span / self.had) if r.span > 0 else 1.0

    def cores(self, workers: int) -> float:
        """The most the run can have of the CPUs with ``workers``: each of its threads an even share beside the
        tenants' (or all its threads, where there are CPUs enough)."""
        threads = workers + self.main_threads
        return min(threads, self.machine.cpus * threads / (threads + self.tenants))

    def cpu_work_s(self, step_speedup: float = 1.0, waits_gone: bool = False) -> float:
        """The run's CPU seconds over the epoch, with its steps ``step_speedup`` times faster, and with
        ``waits_gone`` without what the makings' CPU cost more after their waits."""
        return self.machine.main_cpu_s - self.step_cpu_s * (1 - 1 / step_speedup) + self.workers_cpu_s \
            - (sum(self.after_wait_cpu) if waits_gone else 0.0)

    def replay(self, workers: int, wait_scale: float = 1.0, step_speedup: float = 1.0,
               serial_storage: bool = False) -> Tuple[float, float, float, List[float]]:
        """(the loop's seconds, the CPU sharing, the reads' stretch from sharing the storage, each step's seconds)
        with ``workers``, the device waits x ``wait_scale`` and the steps ``step_speedup`` times faster. With
        ``serial_storage`` the storage serves one reader's worth at a time (an SD card), so readers wait on each
        other; without, each read waits as measured (page cache, NVMe, network storage serving more at once).
        Without the device waits (``wait_scale`` 0) a making's CPU beside its reads' costs what the probe after
        the epoch measured back to back (``Replayable.after_wait``); waits made shorter or longer keep it as
        measured (the probe tells no cost for a wait of another length)."""
        r, c = self.r, self.costs
        assigned = r.assigned if workers == r.workers and workers else None
        wait = [w * wait_scale / (self.read_sharing if serial_storage else 1.0) for w in c.device_wait]
        saved = self.after_wait_cpu if wait_scale == 0 else [0.0] * len(c.make_cpu)
        make_cpu = [m - s for m, s in zip(c.make_cpu, saved)]
        cpu_s = self.making_cpu_s - sum(saved) + self.step_cpu_s / step_speedup  # the loop's CPU seconds
        # a making's measured waits for a CPU shrink with the steps it met there (K times faster: 1/K of them)
        floors = [1 + (f - 1) / step_speedup for f in c.make_sharing]
        sharing = stretch = 1.0
        for _ in range(60):
            make = [d * stretch + o + m * max(sharing, f) for d, o, m, f in zip(wait, c.make_wait, make_cpu, floors)]
            steps = [(o + m * max(sharing, self.sharing)) / step_speedup for o, m in zip(c.step_wait, c.step_cpu)]
            span = replay(r, workers, make, steps, assigned)
            # the runnable threads over the CPUs: the run's (its CPU seconds, stretched, over the loop) and the tenants'
            sharing = (sharing + max(1.0, (sharing * cpu_s / span + self.tenants) / self.machine.cpus)) / 2
            if serial_storage:
                stretch = (stretch + max(1.0, stretch * sum(wait) / span)) / 2
        return span, sharing, stretch, steps


def per_sample(timeline: Timeline, samples: int) -> Tuple[float, float]:
    """The epoch's wait for the device and its makings' CPU beside their reads', each per sample made
    (``CpuModel``'s, over ``samples``): what the probe between epochs checks (trainer.afterwait); zeros where the
    timeline cannot tell."""
    r, _ = replayable(timeline)
    if r is None or samples <= 0:
        return 0.0, 0.0
    model = CpuModel(r, timeline.machine or Machine(len(usable_cpus()), 0.0))
    return sum(model.costs.device_wait) / samples, sum(model.other_cpu) / samples


def _known(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def storage_speed(r: Replayable, device_wait: Sequence[float]) -> Optional[float]:
    """Bytes per second the storage served to one reader at a time: the epoch's bytes over its reads' waits for
    the device, the reads' mean concurrency taken out (readers sharing a disk each see a part of it)."""
    total = sum(device_wait)
    if r.read_bytes <= 0 or total <= 0 or r.span <= 0:
        return None
    return r.read_bytes / (total / max(1.0, total / r.span))


class Prediction(NamedTuple):
    seconds: Optional[float]  # the epoch's predicted wall time; None: not predicted, ``basis`` says why
    basis: str
    # the epoch's compute under the change: as measured where the change leaves the steps alone, else scaled
    # by the replay (workers sharing the CPUs, compute_speedup); a measured run of the change checks against
    # it how far the machine's own speed moved (report.whatif)
    compute_seconds: Optional[float] = None


CACHED_DEVICE_SHARE = 0.01  # reads are the page cache's when under 1 % of the bytes they returned came from storage


def what_ifs(timeline: Timeline, epoch_s: float, machine: Machine,
             storage_bps: Sequence[float] = (), compute_speedup: Sequence[float] = (2.0,),
             free_memory_bytes: Optional[float] = None,
             dataset_bytes: Optional[float] = None, compute_s: Optional[float] = None) -> Dict[str, Prediction]:
    """The epoch's wall time replayed on ``machine`` (``CpuModel``) with one change each: ``dataset_cached``
    (the reads' waits for the device taken out, their CPU kept, and what the makings' other CPU cost more after
    those waits where the probe between epochs measured it), ``workers_doubled`` (storage serving one reader's
    worth at a time) and ``workers_doubled_storage_scales`` (reads as fast as measured), ``storage_bps=N`` (the
    waits x measured speed / N), ``compute_speedup=K`` (steps / K). A prediction is the measured epoch minus the
    model's replay of it plus the replay changed, so the model's own error on this epoch cancels; start-up and
    shutdown stay as measured. None falls below the run's CPU work over its cores, nor below its compute. With
    the epoch's measured ``compute_s`` each prediction also carries its compute."""
    names = ["dataset_cached", "workers_doubled", "workers_doubled_storage_scales"] + ["storage_bps={:g}".format(n) for n in storage_bps] \
        + ["compute_speedup={:g}".format(k) for k in compute_speedup]
    r, why = replayable(timeline)
    if r is None:
        return {name: Prediction(None, why) for name in names}
    model = CpuModel(r, machine)
    bases = {}  # type: Dict[bool, Tuple[float, float, float, List[float]]]

    def predicted(basis: str, workers: int, wait_scale: float = 1.0, step_speedup: float = 1.0,
                  serial_storage: bool = False, extra_s: float = 0.0) -> Prediction:
        if serial_storage not in bases:
            bases[serial_storage] = model.replay(r.workers, serial_storage=serial_storage)
        base_span, base_sharing, _, base_steps = bases[serial_storage]
        span, sharing, stretch, steps = model.replay(workers, wait_scale, step_speedup, serial_storage)
        compute_ratio = sum(steps) / sum(base_steps) if sum(base_steps) > 0 else 1 / step_speedup
        compute = None if compute_s is None else compute_s * compute_ratio
        cores = model.cores(workers)
        cpu_floor = model.cpu_work_s(step_speedup, waits_gone=wait_scale == 0) / cores
        seconds = max(epoch_s - base_span + span + extra_s, cpu_floor, sum(steps), compute or 0.0)
        basis += "; on {:.2f} of {} CPUs{}: CPU work x{:.2f} from sharing (measured x{:.2f}){}{}".format(
            cores, machine.cpus, " (other tenants' threads: {:.2f})".format(model.tenants) if model.tenants else "",
            sharing, base_sharing,
            ", reads x{:.2f} from sharing the storage".format(stretch) if serial_storage else "",
            "; the CPU work's floor ({:.3g} s)".format(cpu_floor) if seconds == cpu_floor else "")
        return Prediction(seconds, basis, compute)

    out = {"dataset_cached": _cached(r, model, epoch_s, free_memory_bytes, dataset_bytes, compute_s, predicted)}
    for name, serial in (("workers_doubled", True), ("workers_doubled_storage_scales", False)):
        out[name] = _doubled(r, free_memory_bytes, serial, predicted)
    speed = storage_speed(r, model.costs.device_wait)
    for n in storage_bps:
        name = "storage_bps={:g}".format(n)
        out[name] = Prediction(None, "no file reads waited for the device in this epoch") if speed is None else \
            predicted("device waits x {:.3g} (measured {:.3g} MB/s a reader)".format(speed / n, speed / 1e6),
                      r.workers, wait_scale=speed / n)
    for k in compute_speedup:
        out["compute_speedup={:g}".format(k)] = predicted("steps / {:g}".format(k), r.workers, step_speedup=k)
    return out


def _cached(r: Replayable, model: CpuModel, epoch_s: float, free_memory_bytes: Optional[float],
            dataset_bytes: Optional[float], compute_s: Optional[float], predicted: Any) -> Prediction:
    """``dataset_cached``: not where the dataset does not fit in free memory, nothing gained where its reads
    came from the page cache already, else the reads' waits for the device taken out."""
    if dataset_bytes is not None and free_memory_bytes is not None and dataset_bytes > free_memory_bytes:
        return Prediction(None, "does not fit: {:.2f} GiB dataset, {:.2f} GiB free".format(
            dataset_bytes / 2 ** 30, free_memory_bytes / 2 ** 30))
    wait = sum(model.costs.device_wait)
    # a filesystem whose reads the kernel does not count (FUSE, some network ones) reads 0 bytes from storage
    # too, but its reads wait
    if r.rchar and r.device_bytes is not None and r.device_bytes <= CACHED_DEVICE_SHARE * r.rchar \
            and wait <= 0.5 * sum(r.read):
        return Prediction(epoch_s, "already in the page cache: {:.3g} MB read, {:.3g} MB of it from storage; "
                          "caching gains nothing".format(r.rchar / 1e6, r.device_bytes / 1e6), compute_s)
    return predicted("device waits ({:.3g} s over the workers) taken out, the reads' CPU ({:.3g} s) kept; {}".format(
        wait, sum(r.read_cpu), "the makings' other CPU: not probed back to back" if r.after_wait is None else
        "the makings' other CPU was {}: {:.3g} s of it taken out".format(r.after_wait.describe(),
                                                                        sum(model.after_wait_cpu))),
        r.workers, wait_scale=0.0)


def _doubled(r: Replayable, free_memory_bytes: Optional[float], serial_storage: bool,
             predicted: Any) -> Prediction:
    """Twice the workers, plus the extra start-up and shutdown of forking and ending twice as many; not where
    the extra workers' own memory exceeds the free memory."""
    if r.workers == 0:
        return Prediction(None, "workers 0: loading in the main process, nothing to double")
    each = sum(r.worker_memory) / r.workers
    if free_memory_bytes is not None and r.workers * each > free_memory_bytes:
        return Prediction(None, "does not fit: {} more workers of {:.2f} GiB each (their private memory), "
                                "{:.2f} GiB free".format(r.workers, each / 2 ** 30, free_memory_bytes / 2 ** 30))
    return predicted("{} -> {} workers, start-up and shutdown doubled{}".format(
        r.workers, 2 * r.workers, "" if serial_storage else " (storage serving more readers as fast)"),
        2 * r.workers, serial_storage=serial_storage, extra_s=r.startup_s + r.shutdown_s)


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
        span(tid, "read", began, began + read, batch=i, bytes=c["read_bytes"][i], cpu_s=c["read_cpu_s"][i])
        span(tid, "preprocess", began + read, c["ready"][i], batch=i, cpu_s=c["cpu_s"][i])
    return events


def window_what_ifs(window: Any, storage_bps: Sequence[float] = (), compute_speedup: Sequence[float] = (2.0,),
                    dataset_bytes: Optional[float] = None) -> Dict[str, Prediction]:
    """``what_ifs`` of a ``trainer.meter.Window`` on the machine its timeline recorded, with the memory free now;
    none without a timeline."""
    if window.timeline is None:
        return {}
    machine = window.timeline.machine or Machine(len(usable_cpus()), 0.0)
    return what_ifs(window.timeline, window.duration_s, machine, storage_bps, compute_speedup, available_memory(),
                    dataset_bytes, window.compute_s)


def run_folder(directory: str, run_id: str) -> str:
    """Where a run's epochs are written and read: one folder per run id and one run id per folder, always
    inside ``directory``: "/", "%" (the escape itself) and control characters are written %XX, and so is a
    leading "." (".." wrote into the parent; a run "a/b" and a run "a_b" shared a folder)."""
    name = "".join("%{:02X}".format(ord(c)) if c in "/%" or ord(c) < 0x20 or c == "\x7f" else c for c in run_id)
    return os.path.join(directory, "%2E" + name[1:] if name.startswith(".") else name)


def write_timeline(directory: str, run_id: str, epoch: int, window: Any) -> str:
    """DIR/RUN_ID/epoch-N.json, whole or not at all (``exporter.atomicfile``); an OSError names the file."""
    folder = run_folder(directory, run_id)
    path = os.path.join(folder, "epoch-{}.json".format(epoch))
    data = dict(window.timeline.to_dict(), run_id=run_id, epoch=epoch, duration_s=window.duration_s)
    os.makedirs(folder, exist_ok=True)
    atomicfile.write_bytes(path, json.dumps(data).encode("utf-8"))
    return path
