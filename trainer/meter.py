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
  is split in their proportion: ``fetch_stall_storage_s`` and
  ``fetch_stall_preprocess_s`` add up to ``fetch_stall_s``.

Timing modes: ``lazy`` (default: CUDA events resolved with ``Event.query()``
once the GPU has passed them; on the CPU, whose work is synchronous, a
monotonic clock), ``sync`` (the classic per-batch ``torch.cuda.synchronize()``
around a host clock, for comparison) and ``none`` (nothing measured per batch,
the benchmark baseline; windows still give wall time).
"""
import collections
import contextlib
import time
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple

TIMING_MODES = ("lazy", "sync", "none")


class LoadTimes(NamedTuple):
    """Seconds of wall time (``time.perf_counter``) the process that made one batch (a DataLoader worker, or
    the main process without workers) spent on it: wall time is what delays the batch, I/O waits included."""
    read_s: float  # opening and reading its samples' files
    preprocess_s: float  # everything else: decode, augment, collate


class BatchTiming(NamedTuple):
    """One training step's times, in seconds; ``read_s``/``preprocess_s`` None where the batch had no LoadTimes."""
    fetch_stall_s: float
    compute_s: float
    batch_s: float
    read_s: Optional[float] = None
    preprocess_s: Optional[float] = None

    @property
    def fetch_stall_storage_s(self) -> Optional[float]:
        """The stall times the share the batch's file reads took of its making."""
        split = self.stall_split()
        return None if split is None else split[0]

    @property
    def fetch_stall_preprocess_s(self) -> Optional[float]:
        """The rest of the stall: decode, augment and collate's share."""
        split = self.stall_split()
        return None if split is None else split[1]

    def stall_split(self) -> Optional[Tuple[float, float]]:
        """(storage, preprocess) in proportion to read vs preprocess time; (0, 0) when neither took any."""
        if self.read_s is None or self.preprocess_s is None:
            return None
        work = self.read_s + self.preprocess_s
        if work <= 0:
            return 0.0, 0.0
        storage = self.fetch_stall_s * self.read_s / work
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

    @property
    def overhead_s(self) -> float:
        """Wall time that was neither stall nor compute (host work, logging, tails)."""
        return self.duration_s - self.fetch_stall_s - self.compute_s


class ClockTimer:
    """Host monotonic clock; ``sync`` (e.g. ``torch.cuda.synchronize``) is
    called at each boundary when the device runs asynchronously."""

    def __init__(self, sync: Optional[Callable[[], Any]] = None) -> None:
        self._sync = sync
        self._fetch_began = 0.0
        self._stall = 0.0
        self._step_began = 0.0
        self._last_step_end = 0.0

    def _now(self) -> float:
        if self._sync is not None:
            self._sync()
        return time.perf_counter()

    def iteration_start(self) -> None:
        self._last_step_end = self._now()
        self._stall = 0.0

    def fetch_begin(self) -> None:
        self._fetch_began = time.perf_counter()  # the previous step already synced

    def fetch_end(self) -> None:
        self._stall += self._now() - self._fetch_began

    def step_begin(self) -> None:
        self._step_began = self._now()

    def step_end(self) -> List[BatchTiming]:
        end = self._now()
        timing = BatchTiming(self._stall, end - self._step_began, end - self._last_step_end)
        self._stall = 0.0
        self._last_step_end = end
        return [timing]

    def flush(self) -> List[BatchTiming]:
        return []


class EventTimer:
    """Device events on the GPU timeline, read lazily: a step's times are
    resolved only once ``query()`` says its end event has completed, so the
    host never waits for the device except in ``flush`` (window boundaries).

    ``new_event`` makes objects with the ``torch.cuda.Event`` interface
    (``record()``, ``query()``, ``elapsed_time(other)`` in ms, ``synchronize()``);
    ``stream`` (optional) gives the stream to record them on, the run's device's
    current stream, whatever device is current in the calling thread.
    """

    def __init__(self, new_event: Callable[[], Any], stream: Optional[Callable[[], Any]] = None) -> None:
        self._new_event = new_event
        self._stream = stream
        self._last_end = None  # type: Any
        self._start = None  # type: Any
        # (previous step's end, this step's start, this step's end)
        self._pending = collections.deque()  # type: Deque[Any]

    def _record(self) -> Any:
        event = self._new_event()
        if self._stream is None:
            event.record()
        else:
            event.record(self._stream())
        return event

    def iteration_start(self) -> None:
        self._last_end = self._record()

    def fetch_begin(self) -> None:
        pass

    def fetch_end(self) -> None:
        pass

    def step_begin(self) -> None:
        self._start = self._record()

    def step_end(self) -> List[BatchTiming]:
        end = self._record()
        self._pending.append((self._last_end, self._start, end))
        self._last_end = end
        return self._resolve(wait=False)

    def flush(self) -> List[BatchTiming]:
        return self._resolve(wait=True)

    def _resolve(self, wait: bool) -> List[BatchTiming]:
        if wait and self._pending:
            self._pending[-1][2].synchronize()  # the stream is ordered: all older ones are done too
        done = []
        while self._pending and self._pending[0][2].query():
            previous_end, start, end = self._pending.popleft()
            done.append(BatchTiming(
                fetch_stall_s=max(previous_end.elapsed_time(start), 0.0) / 1000.0,
                compute_s=start.elapsed_time(end) / 1000.0,
                batch_s=previous_end.elapsed_time(end) / 1000.0))
        return done


class NullTimer:
    """Measures nothing per batch (the uninstrumented baseline); ``sync`` at
    window boundaries only, so a window's wall time still includes the device's work."""

    def __init__(self, sync: Optional[Callable[[], Any]] = None) -> None:
        self._sync = sync

    def iteration_start(self) -> None:
        pass

    def fetch_begin(self) -> None:
        pass

    def fetch_end(self) -> None:
        pass

    def step_begin(self) -> None:
        pass

    def step_end(self) -> List[BatchTiming]:
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


class StepMeter:
    """Times the wait for each batch and each training step; reports every
    batch to ``on_batch`` and sums them into named windows."""

    def __init__(self, device: Any = "cpu", timing: str = "lazy",
                 on_batch: Optional[Callable[[BatchTiming], Any]] = None,
                 timer: Any = None) -> None:
        self.timing = timing
        self._timer = timer if timer is not None else make_timer(device, timing)
        self._on_batch = on_batch
        self._windows = {}  # type: Dict[str, List[Any]]
        # LoadTimes of the batches stepped whose timings are not resolved yet, oldest first (lazy timing
        # resolves steps later, in order); the NullTimer resolves none, so nothing is kept for it
        self._load_times = collections.deque()  # type: Deque[Optional[LoadTimes]]
        self._next_load_times = None  # type: Optional[LoadTimes]

    def wrap(self, loader: Iterable[Any], device: Any = None) -> Iterator[Any]:
        """Iterates ``loader``, timing each wait for the next batch (and its
        copy to ``device`` if given). Creating the iterator (worker start-up)
        counts towards the first batch's wait."""
        timer = self._timer
        timer.iteration_start()
        timer.fetch_begin()
        iterator = iter(loader)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            batch, self._next_load_times = split_load_times(batch)
            if device is not None:
                batch = to_device(batch, device)
            timer.fetch_end()
            yield batch
            timer.fetch_begin()

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """Times the training step (zero_grad, forward, backward, optimizer step)."""
        self._timer.step_begin()
        if not isinstance(self._timer, NullTimer):
            self._load_times.append(self._next_load_times)
        self._next_load_times = None
        yield
        self._deliver(self._timer.step_end())

    # Hook-driven loops (framework callbacks) call these where ``wrap`` and ``step`` cannot go around the loop.
    def begin_iteration(self) -> None:
        """The loop starts iterating its loader: the wait for the first batch begins."""
        self._timer.iteration_start()
        self._timer.fetch_begin()

    def batch_arrived(self) -> None:
        """The step's batch is here (on the device if the loop copies it): its wait ends, the step begins."""
        self._timer.fetch_end()
        self._timer.step_begin()

    def step_done(self) -> None:
        """The step has ended: its timing goes out (lazily on a GPU) and the wait for the next batch begins."""
        self._deliver(self._timer.step_end())
        self._timer.fetch_begin()

    def begin_window(self, name: str) -> None:
        """Starts summing batches under ``name`` (batches still in flight belong to earlier windows)."""
        if name in self._windows:
            raise ValueError("window {!r} is already open".format(name))
        self._deliver(self._timer.flush())
        # start, began, stall, compute, batches, read, preprocess, storage stall, preprocess stall, timed batches
        self._windows[name] = [time.time(), time.perf_counter(), 0.0, 0.0, 0, 0.0, 0.0, 0.0, 0.0, 0]

    def end_window(self, name: str) -> Window:
        """Waits for the window's batches to resolve and returns its totals."""
        if name not in self._windows:
            raise ValueError("window {!r} was never begun".format(name))
        self._deliver(self._timer.flush())
        start_time, began, stall, compute, batches, *loads, timed = self._windows.pop(name)
        duration = time.perf_counter() - began
        if not 0 < timed == batches:
            loads = [None] * len(loads)
        return Window(name, duration, stall, compute, batches, start_time, start_time + duration, *loads)

    def _deliver(self, timings: List[BatchTiming]) -> None:
        for timing in timings:
            load_times = self._load_times.popleft() if self._load_times else None
            split = None
            if load_times is not None:
                timing = timing._replace(read_s=load_times.read_s, preprocess_s=load_times.preprocess_s)
                split = timing.stall_split()
            for sums in self._windows.values():
                sums[2] += timing.fetch_stall_s
                sums[3] += timing.compute_s
                sums[4] += 1
                if load_times is not None and split is not None:
                    sums[5] += load_times.read_s
                    sums[6] += load_times.preprocess_s
                    sums[7] += split[0]
                    sums[8] += split[1]
                    sums[9] += 1
            if self._on_batch is not None:
                self._on_batch(timing)
