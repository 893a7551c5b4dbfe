"""Per-batch fetch stall, compute and batch time for any PyTorch training loop.

Usage (the CLI uses exactly this)::

    meter = StepMeter(device, timing="lazy", on_batch=print)
    meter.begin_window("epoch")
    for images, labels in meter.wrap(loader, device=device):
        with meter.step():
            ...  # zero_grad, forward, backward, optimizer step
    window = meter.end_window("epoch")   # totals, like Zeus' end_window

What is measured for each batch:

- ``fetch_stall_s``: how long the step waited for its batch. On the CPU (and
  with ``timing="sync"``) that is the time spent inside ``next()`` on the
  loader, plus the copy to ``device`` when ``wrap`` does it: loading and
  preprocessing that prefetching did not hide. With ``timing="lazy"`` on CUDA
  it is the gap on the run's CUDA stream between the previous step's end event
  and this step's start event (nothing is synchronised): the GPU's idle time
  waiting for the host, *plus any GPU work queued outside* ``meter.step()``
  (the batch's copy to the device, metrics or EMA updates between steps):
  in lazy mode such work counts as stall, not compute.
- ``compute_s``: the ``with meter.step()`` block.
- ``batch_s``: from the previous step's end (the start of the iteration for
  the first batch) to this step's end.
- ``read_s`` / ``preprocess_s``: where the loader appends ``LoadTimes`` to each
  batch (``trainer.data.make_loader(timed=True)``), the seconds spent making the
  batch: reading its files, and decoding, augmenting and collating it. ``wrap``
  strips them, so the loop still gets ``(images, targets)``. The batch's stall
  is charged to what the loader's critical path was doing during it
  (``StallSplitter``): ``fetch_stall_storage_s`` and
  ``fetch_stall_preprocess_s`` add up to ``fetch_stall_s``.

Timing modes: ``lazy`` (default: CUDA events resolved with ``Event.query()``
once the GPU has passed them; on the CPU, whose work is synchronous, a
monotonic clock), ``sync`` (the classic per-batch ``torch.cuda.synchronize()``
around a host clock, for comparison) and ``none`` (nothing measured per batch,
the benchmark baseline; windows still give wall time).
"""
import collections
import contextlib
import itertools
import time
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple

from trainer.machine import Machine, cpu_sample

TIMING_MODES = ("lazy", "sync", "none")


class LoadTimes(NamedTuple):
    """What the process that made one batch (a DataLoader worker, or the main process without workers) says of
    it. Durations are wall time (what delays the batch, I/O and waits for a CPU included); ``began``/``ready``
    are ``time.monotonic()``, CLOCK_MONOTONIC, one clock for every process of the machine."""
    read_s: float  # opening and reading its samples' files
    preprocess_s: float  # everything else: decode, augment, collate
    worker: int = -1  # the DataLoader worker's id; -1: the main process
    began: Optional[float] = None  # when making it began
    ready: Optional[float] = None  # when it was made
    cpu_s: Optional[float] = None  # the maker's CPU seconds for it (time.process_time)
    read_bytes: int = 0  # bytes its file reads returned
    io: Optional[Tuple[int, int, int]] = None  # its maker's /proc/self/io since its previous batch: storage
    # bytes, bytes returned by read calls, read calls (trainer.data.IO_FIELDS); None: no I/O accounting
    read_cpu_s: Optional[float] = None  # the CPU seconds of its file reads (inside cpu_s), the rest of read_s waited
    private_bytes: Optional[int] = None  # its maker's private memory (trainer.machine.private_bytes), now and then
    run_delay_s: Optional[float] = None  # its maker's wait for a CPU (runnable, not running) while making it


class HostStep(NamedTuple):
    """One step as the host saw it, ``StepMeter``'s clock (monotonic seconds): the wait for its batch (``next()``
    and the copy to the device) and the step block."""
    wait_began: float
    wait_ended: float
    step_began: float
    step_ended: float = 0.0
    load: Optional[LoadTimes] = None


class BatchTiming(NamedTuple):
    """One training step's times, in seconds.

    ``fetch_stall_s`` is host time blocked waiting for the batch (on a GPU, only the part the GPU sat idle);
    ``host_overhead_s`` the rest of the gap before the step that was not compute: loop bookkeeping on the
    host, and on a GPU its idle time while the host was busy elsewhere (optimizer, launches, logging).
    ``storage_share`` (set by ``StallSplitter``) is the part of the stall charged to file reads."""
    fetch_stall_s: float
    compute_s: float
    batch_s: float
    host_overhead_s: float = 0.0
    host: Optional[HostStep] = None
    storage_share: Optional[float] = None

    @property
    def read_s(self) -> Optional[float]:
        return None if self.load is None else self.load.read_s

    @property
    def preprocess_s(self) -> Optional[float]:
        return None if self.load is None else self.load.preprocess_s

    @property
    def load(self) -> Optional[LoadTimes]:
        return None if self.host is None else self.host.load

    @property
    def fetch_stall_storage_s(self) -> Optional[float]:
        split = self.stall_split()
        return None if split is None else split[0]

    @property
    def fetch_stall_preprocess_s(self) -> Optional[float]:
        split = self.stall_split()
        return None if split is None else split[1]

    def stall_split(self) -> Optional[Tuple[float, float]]:
        """(storage, preprocess) parts of the stall; None where the loader said nothing of its work."""
        if self.storage_share is None:
            return None
        storage = self.fetch_stall_s * self.storage_share
        return storage, self.fetch_stall_s - storage


class Window(NamedTuple):
    """Totals over one measurement window (typically an epoch)."""
    name: str
    duration_s: float  # wall time, begin_window to end_window
    fetch_stall_s: float  # sums of the per-batch values
    compute_s: float
    batches: int
    start_time: float  # Unix time
    end_time: float
    # sums of the batches' LoadTimes and stall split; None unless every batch of the window carried LoadTimes
    read_s: Optional[float] = None
    preprocess_s: Optional[float] = None
    fetch_stall_storage_s: Optional[float] = None
    fetch_stall_preprocess_s: Optional[float] = None
    host_overhead_s: float = 0.0
    loader_startup_s: float = 0.0  # iter(loader): forking workers, sending the first indices
    loader_shutdown_s: float = 0.0  # the loader's end: the last next() and its workers' teardown
    # the batch makers' own I/O (/proc/<pid>/io of the workers, or the main process), summed; None unless every
    # batch carried it
    io_read_bytes: Optional[int] = None
    io_rchar_bytes: Optional[int] = None
    io_read_syscalls: Optional[int] = None
    timeline: Any = None  # trainer.timeline.Timeline of the window's batches, where recorded

    @property
    def overhead_s(self) -> float:
        """Wall time that was neither stall, compute, host overhead nor the loader's start-up and shutdown."""
        return (self.duration_s - self.fetch_stall_s - self.compute_s - self.host_overhead_s
                - self.loader_startup_s - self.loader_shutdown_s)


class ClockTimer:
    """The host's clock (``clock``, monotonic seconds); ``sync`` (e.g. ``torch.cuda.synchronize``) is called at
    each boundary when the device runs asynchronously, so the step's device work is inside its times."""

    def __init__(self, sync: Optional[Callable[[], Any]] = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._sync = sync
        self.clock = clock
        self._last_step_end = 0.0

    def now(self) -> float:
        if self._sync is not None:
            self._sync()
        return self.clock()

    def iteration_start(self) -> None:
        self._last_step_end = self.now()

    def step_begin(self) -> None:
        pass

    def step_end(self, host: HostStep) -> List[BatchTiming]:
        """``host.step_ended`` is this timer's own (synchronised) clock."""
        stall = host.wait_ended - host.wait_began
        compute = host.step_ended - host.step_began
        batch = host.step_ended - self._last_step_end
        self._last_step_end = host.step_ended
        return [BatchTiming(stall, compute, batch, max(batch - compute - stall, 0.0), host)]

    def flush(self) -> List[BatchTiming]:
        return []


class EventTimer:
    """Device events on the GPU timeline, read lazily: a step's times are
    resolved only once ``query()`` says its end event has completed, so the
    host never waits for the device except in ``flush`` (window boundaries).

    The GPU's idle gap before a step is split into the host's wait for the batch (fetch stall: the part of
    the wait inside the gap) and the rest (host overhead: the host was busy elsewhere while the GPU had nothing
    queued). An idle GPU runs the step's start event as soon as it is recorded, so the gap ends at the host's
    ``step_began`` and the two can be laid on one clock.

    ``new_event`` makes objects with the ``torch.cuda.Event`` interface
    (``record()``, ``query()``, ``elapsed_time(other)`` in ms, ``synchronize()``);
    ``stream`` (optional) gives the stream to record them on, the run's device's
    current stream, whatever device is current in the calling thread. Ended events are reused.
    """

    def __init__(self, new_event: Callable[[], Any], stream: Optional[Callable[[], Any]] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._new_event = new_event
        self._stream = stream
        self.clock = clock
        self._spare = []  # type: List[Any]
        self._last_end = None  # type: Any
        self._start = None  # type: Any
        # (previous step's end, this step's start, this step's end, the host's view of the step)
        self._pending = collections.deque()  # type: Deque[Any]

    def now(self) -> float:
        return self.clock()

    def _record(self) -> Any:
        event = self._spare.pop() if self._spare else self._new_event()
        if self._stream is None:
            event.record()
        else:
            event.record(self._stream())
        return event

    def iteration_start(self) -> None:
        self._last_end = self._record()

    def step_begin(self) -> None:
        self._start = self._record()

    def step_end(self, host: HostStep) -> List[BatchTiming]:
        end = self._record()
        self._pending.append((self._last_end, self._start, end, host))
        self._last_end = end
        return self._resolve(wait=False)

    def flush(self) -> List[BatchTiming]:
        return self._resolve(wait=True)

    def _resolve(self, wait: bool) -> List[BatchTiming]:
        if wait and self._pending:
            self._pending[-1][2].synchronize()  # the stream is ordered: all older ones are done too
        done = []
        while self._pending and self._pending[0][2].query():
            previous_end, start, end, host = self._pending.popleft()
            gap = max(previous_end.elapsed_time(start), 0.0) / 1000.0
            # an idle GPU runs the start event as it is recorded: idle from step_began - gap on the host's clock
            stall = max(min(host.wait_ended, host.step_began) - max(host.wait_began, host.step_began - gap), 0.0)
            done.append(BatchTiming(stall, start.elapsed_time(end) / 1000.0, previous_end.elapsed_time(end) / 1000.0,
                                    gap - stall, host))
            self._spare.append(previous_end)  # no pending step refers to it any more
            self._spare.append(start)
        return done


class NullTimer:
    """Measures nothing per batch (the uninstrumented baseline); ``sync`` at
    window boundaries only, so a window's wall time still includes the device's work."""

    def __init__(self, sync: Optional[Callable[[], Any]] = None) -> None:
        self._sync = sync

    @staticmethod
    def clock() -> float:
        return 0.0  # no stamps in the baseline

    now = clock

    def iteration_start(self) -> None:
        pass

    def step_begin(self) -> None:
        pass

    def step_end(self, host: HostStep) -> List[BatchTiming]:
        return []

    def flush(self) -> List[BatchTiming]:
        if self._sync is not None:
            self._sync()
        return []


def make_timer(device: Any, timing: str) -> Any:
    """The timer for ``timing`` on ``device`` (a torch.device or a string).
    On the CPU ``lazy`` and ``sync`` are the same clock: CPU work is synchronous."""
    if timing not in TIMING_MODES:
        raise ValueError("timing must be one of {}, not {!r}".format(", ".join(TIMING_MODES), timing))
    import torch
    device = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    if timing == "none":
        return NullTimer(sync)
    if sync is None:
        return ClockTimer()
    if timing == "sync":
        return ClockTimer(sync)
    return EventTimer(lambda: torch.cuda.Event(enable_timing=True), lambda: torch.cuda.current_stream(device))


def split_load_times(batch: Any) -> Tuple[Any, Optional[LoadTimes]]:
    """``(images, targets, LoadTimes)`` -> ``((images, targets), LoadTimes)``; any other batch -> ``(batch, None)``."""
    if isinstance(batch, (tuple, list)) and len(batch) > 1 and isinstance(batch[-1], LoadTimes):
        return batch[:-1], batch[-1]
    return batch, None


def to_device(batch: Any, device: Any) -> Any:
    """Moves every tensor in a (nested) batch to ``device``, asynchronously from pinned memory."""
    if hasattr(batch, "to"):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    return batch


class StallSplitter:
    """Charges each wait for a batch to the loader's critical path (``storage_share``). A timing is held until
    every batch that could have been in the making during its wait has arrived (``lag`` = prefetch factor x
    workers later), then passed on with its ``storage_share``. Each worker's pace, its mean seconds a batch, is
    kept over the loader's current iteration, the batches held included."""

    def __init__(self, deliver: Callable[[BatchTiming], None]) -> None:
        self.lag = 0
        self._deliver = deliver
        self._held = collections.deque()  # type: Deque[BatchTiming]
        self._making = {}  # type: Dict[int, List[float]]  # worker: [seconds making its batches, batches]
        self._pace = {}  # type: Dict[int, float]  # worker: mean seconds a batch

    def start(self, lag: int) -> None:
        """A new iteration of the loader: the last one's batches have all arrived, its workers' paces are over."""
        self.flush()
        self.lag = lag
        self._making, self._pace = {}, {}

    def add(self, timing: BatchTiming) -> None:
        load = timing.load
        if load is not None:
            making = self._making.setdefault(load.worker, [0.0, 0.0])
            making[0] += load.read_s + load.preprocess_s
            making[1] += 1
            self._pace[load.worker] = making[0] / making[1]
        self._held.append(timing)
        while len(self._held) > self.lag:
            self._release()

    def flush(self) -> None:
        while self._held:
            self._release()

    def _release(self) -> None:
        timing = self._held.popleft()
        self._deliver(timing._replace(storage_share=storage_share(timing, self._held, self._pace)))


# A worker whose batches take on average at most TIED less than the slowest worker's is fully on the loader's
# critical path, one OFF faster or more is off it, linearly between.
TIED = 0.10
OFF = 0.25


def critical(pace: float, slowest: float) -> float:
    """A worker's weight on the loader's critical path from its ``pace`` (mean seconds a batch) and the slowest
    worker's, by how much faster it is (``TIED``, ``OFF``). Round-robin gives every worker one batch a round, so a
    loader-bound epoch runs at its slowest workers' pace; a batch's making time varies by tens of percent on a
    loaded machine (equal workers' means by up to a tenth in a short epoch), so equally slow workers share the
    critical path whatever the noise, while one a quarter faster idles every round."""
    return min(max((OFF - 1.0 + pace / slowest) / (OFF - TIED), 0.0), 1.0) if slowest > 0 else 1.0


def storage_share(timing: BatchTiming, later: Iterable[BatchTiming], pace: Dict[int, float]) -> Optional[float]:
    """The share of ``timing``'s wait charged to file reads: what the loader's critical path was doing during it.

    The wait is charged to what the slowest workers (by ``pace``, each worker's mean seconds a batch: ``critical``)
    were doing during it, never to a faster worker's batches made in parallel: however much such a worker did
    during the wait, it idles between batches, and caching or speeding its work would not shorten the epoch. The
    worker making the batch waited for
    counts with that batch alone (in-order delivery has handed over the batches ahead of it in its queue; its later
    batches did not hold this one up), the others with their batches in the making during the wait (``later``),
    each by its overlap with the wait times its worker's weight. The batch waited for is not always on the
    critical path: a worker that started late is waited for every round without being slower (its lead is the
    prefetch queue), and two equally slow workers share the waits whichever is behind.

    Within a batch, reads and preprocessing interleave sample by sample and only their sums are sent, so a batch's
    part is split by its read : preprocess time; the part of the wait no counted making covers (the batch's
    handing over) follows the same split. Where no counted making overlaps the wait, the batch's own read :
    preprocess time splits it."""
    load = timing.load
    if load is None:
        return None
    work = load.read_s + load.preprocess_s
    own = load.read_s / work if work > 0 else 0.0
    if timing.host is None or load.began is None or load.ready is None:
        return own
    began, ended = timing.host.wait_began, timing.host.wait_ended
    slowest = max(pace.values(), default=0.0)
    reading = making = 0.0
    for other in itertools.chain((timing,), later):
        made = other.load
        if made is None or made.began is None or made.ready is None or (
                made.worker == load.worker and other is not timing):
            continue
        overlap = min(ended, made.ready) - max(began, made.began)
        work = made.read_s + made.preprocess_s
        if overlap > 0 and work > 0:
            overlap *= critical(pace.get(made.worker, slowest), slowest)
            reading += overlap * made.read_s / work
            making += overlap
    return reading / making if making > 0 else own


class _Sums:
    """One open window's running totals."""

    def __init__(self, timeline: Any) -> None:
        self.start_time = time.time()
        self.began = time.perf_counter()
        self.stall = self.compute = self.host_overhead = 0.0
        self.batches = self.timed = 0
        self.read = self.preprocess = self.storage_stall = self.preprocess_stall = 0.0
        self.startup = self.shutdown = 0.0
        self.io = [0, 0, 0]
        self.io_batches = 0
        self.timeline = timeline
        self.cpu = None if timeline is None else cpu_sample()  # the machine the window's what-ifs model

    def add(self, timing: BatchTiming) -> None:
        self.stall += timing.fetch_stall_s
        self.compute += timing.compute_s
        self.host_overhead += timing.host_overhead_s
        self.batches += 1
        split = timing.stall_split()
        if split is not None and timing.load is not None:
            self.read += timing.load.read_s
            self.preprocess += timing.load.preprocess_s
            self.storage_stall += split[0]
            self.preprocess_stall += split[1]
            self.timed += 1
            if timing.load.io is not None:
                self.io = [a + b for a, b in zip(self.io, timing.load.io)]
                self.io_batches += 1
        if self.timeline is not None:
            self.timeline.add(timing)

    def window(self, name: str) -> Window:
        duration = time.perf_counter() - self.began
        loads = (self.read, self.preprocess, self.storage_stall, self.preprocess_stall) \
            if 0 < self.timed == self.batches else (None, None, None, None)
        io = self.io if 0 < self.io_batches == self.batches else (None, None, None)
        if self.timeline is not None:
            self.timeline.machine = Machine.between(self.cpu, cpu_sample(), duration)
        return Window(name, duration, self.stall, self.compute, self.batches, self.start_time,
                      self.start_time + duration, *loads, host_overhead_s=self.host_overhead,
                      loader_startup_s=self.startup, loader_shutdown_s=self.shutdown, io_read_bytes=io[0],
                      io_rchar_bytes=io[1], io_read_syscalls=io[2], timeline=self.timeline)


class StepMeter:
    """Times the wait for each batch and each training step; reports every
    batch to ``on_batch`` and sums them into named windows, each with its loader timeline
    (``trainer.timeline.Timeline``) unless ``timeline`` is False."""

    def __init__(self, device: Any = "cpu", timing: str = "lazy",
                 on_batch: Optional[Callable[[BatchTiming], Any]] = None,
                 timer: Any = None, timeline: bool = True) -> None:
        self.timing = timing
        self._timer = timer if timer is not None else make_timer(device, timing)
        self._clock = self._timer.clock
        self._on_batch = on_batch
        self._windows = {}  # type: Dict[str, _Sums]
        self._splitter = StallSplitter(self._deliver)
        self._timeline = timeline and not isinstance(self._timer, NullTimer)
        self._loader = (0, 0)  # workers, prefetch factor of the loader being iterated
        self._wait_began = 0.0
        self._arrival = None  # type: Optional[Tuple[float, float, Optional[LoadTimes]]]
        self._step_began = 0.0

    def wrap(self, loader: Iterable[Any], device: Any = None) -> Iterator[Any]:
        """Iterates ``loader``, timing each wait for the next batch (and its copy to ``device`` if given).
        Creating the iterator (``iter(loader)``: forking workers, sending the first indices) is the loader's
        start-up, the last ``next()`` and the workers' teardown its shutdown: neither is any batch's wait."""
        self._loader_shape(loader)
        called = self._clock()
        iterator = iter(loader)  # type: Optional[Iterator[Any]]
        self._loader_time(called, self._clock(), "startup")
        self._timer.iteration_start()
        ended = False
        try:
            while True:
                self._wait_began = self._clock()
                try:
                    batch = next(iterator)  # type: ignore[arg-type]
                except StopIteration:
                    ended = True
                    self._loader_time(self._wait_began, self._clock(), "shutdown")
                    return
                batch, load = split_load_times(batch)
                if device is not None:
                    batch = to_device(batch, device)
                self._arrived(load)
                yield batch
        finally:
            if not ended:  # the loop stopped early: the loader's workers end when it is dropped
                began = self._clock()
                iterator = None
                self._loader_time(began, self._clock(), "shutdown")

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """Times the training step (zero_grad, forward, backward, optimizer step)."""
        self._begin_step()
        yield
        self._end_step()

    # Hook-driven loops (framework callbacks) call these where ``wrap`` and ``step`` cannot go around the loop.
    def begin_iteration(self, loader: Any = None) -> None:
        """The loop starts iterating ``loader`` (its workers and prefetch factor, where it has them, shape the
        stall split and the timeline): the wait for the first batch begins."""
        self._loader_shape(loader)
        self._timer.iteration_start()
        self._wait_began = self._clock()

    def _loader_shape(self, loader: Any) -> None:
        workers = getattr(loader, "num_workers", 0) or 0
        self._loader = (workers, (getattr(loader, "prefetch_factor", None) or 2) if workers else 0)
        self._splitter.start(self._loader[0] * self._loader[1])
        for sums in self._windows.values():
            if sums.timeline is not None:
                sums.timeline.workers, sums.timeline.prefetch_factor = self._loader

    def batch_arrived(self, load: Optional[LoadTimes] = None) -> None:
        """The step's batch is here (on the device if the loop copies it): its wait ends, the step begins."""
        self._arrived(load)
        self._begin_step()

    def step_done(self) -> None:
        """The step has ended: its timing goes out (lazily on a GPU) and the wait for the next batch begins."""
        self._end_step()
        self._wait_began = self._clock()

    def _arrived(self, load: Optional[LoadTimes]) -> None:
        self._arrival = (self._wait_began, self._timer.now(), load)

    def _begin_step(self) -> None:
        self._timer.step_begin()
        self._step_began = self._timer.now()

    def _end_step(self) -> None:
        wait_began, wait_ended, load = self._arrival or (self._step_began, self._step_began, None)
        self._arrival = None
        for timing in self._timer.step_end(HostStep(wait_began, wait_ended, self._step_began, self._timer.now(), load)):
            self._splitter.add(timing)

    def _loader_time(self, began: float, ended: float, what: str) -> None:
        for sums in self._windows.values():
            setattr(sums, what, getattr(sums, what) + ended - began)
            if sums.timeline is not None:
                sums.timeline.loader_event(what, began, ended, *self._loader)

    def begin_window(self, name: str) -> None:
        """Starts summing batches under ``name`` (batches still in flight belong to earlier windows)."""
        if name in self._windows:
            raise ValueError("window {!r} is already open".format(name))
        self._flush()
        timeline = None
        if self._timeline:
            from trainer.timeline import Timeline
            timeline = Timeline()
        self._windows[name] = _Sums(timeline)

    def end_window(self, name: str) -> Window:
        """Waits for the window's batches to resolve and returns its totals."""
        if name not in self._windows:
            raise ValueError("window {!r} was never begun".format(name))
        self._flush()
        return self._windows.pop(name).window(name)

    def _flush(self) -> None:
        for timing in self._timer.flush():
            self._splitter.add(timing)
        self._splitter.flush()

    def _deliver(self, timing: BatchTiming) -> None:
        for sums in self._windows.values():
            sums.add(timing)
        if self._on_batch is not None:
            self._on_batch(timing)
