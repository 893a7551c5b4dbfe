"""StepMeter logic: lazy CUDA-event resolution against a fake GPU timeline,
the sync and none modes, and windows. The fake event has torch.cuda.Event's
interface (record, query, elapsed_time in ms, synchronize)."""
from typing import List

import pytest
import torch

from trainer.meter import BatchTiming, ClockTimer, EventTimer, LoadTimes, NullTimer, StepMeter, make_timer


class FakeGpu:
    """One CUDA stream: work runs in order, a marker completes when the GPU reaches it.
    ``host_ms`` is the host's clock; both clocks are in milliseconds."""

    def __init__(self) -> None:
        self.host_ms = 0.0
        self.busy_until_ms = 0.0
        self.synchronizations = 0

    def clock(self) -> float:
        """The host clock in seconds, as StepMeter reads it."""
        return self.host_ms / 1000.0

    def launch(self, duration_ms: float) -> None:
        self.busy_until_ms = max(self.host_ms, self.busy_until_ms) + duration_ms


class FakeEvent:
    def __init__(self, gpu: FakeGpu) -> None:
        self.gpu = gpu
        self.time_ms = None
        self.stream = None

    def record(self, stream=None) -> None:
        self.stream = stream
        self.time_ms = max(self.gpu.host_ms, self.gpu.busy_until_ms)

    def query(self) -> bool:
        return self.gpu.host_ms >= self.time_ms

    def elapsed_time(self, end: "FakeEvent") -> float:
        assert self.query() and end.query(), "torch raises when an event has not completed"
        return end.time_ms - self.time_ms

    def synchronize(self) -> None:
        self.gpu.synchronizations += 1
        self.gpu.host_ms = max(self.gpu.host_ms, self.time_ms)


def test_the_fake_has_the_real_event_interface():
    for method in ("record", "query", "elapsed_time", "synchronize"):
        assert callable(getattr(torch.cuda.Event, method)) and callable(getattr(FakeEvent, method))


def test_lazy_events_give_the_gpu_idle_gap_without_synchronizing():
    gpu = FakeGpu()
    seen = []  # type: List[BatchTiming]
    meter = StepMeter(timer=EventTimer(lambda: FakeEvent(gpu), clock=gpu.clock), on_batch=seen.append)
    loads_ms = [5, 25, 0, 0, 40]  # host time to fetch each batch; every step is 10 ms of GPU work

    def loader():
        for load in loads_ms:
            gpu.host_ms += load
            yield load

    meter.begin_window("epoch")
    resolved_after_step = []
    for _ in meter.wrap(loader()):
        with meter.step():
            gpu.launch(10)
        resolved_after_step.append(len(seen))
    assert gpu.synchronizations == 0, "lazy mode must never wait for the GPU inside the loop"
    # Batch 0 ends on the GPU at 15 ms; the host reaches 30 ms only while fetching batch 1.
    assert resolved_after_step[0] == 0
    assert resolved_after_step[1] >= 1
    window = meter.end_window("epoch")
    assert gpu.synchronizations == 1  # once, at the window's end
    # GPU timeline: starts 5, 30, 40, 50, 70; ends 15, 40, 50, 60, 80.
    assert [t.fetch_stall_s * 1000 for t in seen] == pytest.approx([5, 15, 0, 0, 10])
    assert [t.compute_s * 1000 for t in seen] == pytest.approx([10] * 5)
    assert [t.batch_s * 1000 for t in seen] == pytest.approx([15, 25, 10, 10, 20])
    assert window.batches == 5
    assert window.fetch_stall_s == pytest.approx(0.030)
    assert window.compute_s == pytest.approx(0.050)


def test_lazy_mode_counts_gpu_work_outside_step_as_host_overhead_not_stall():
    """The stream's gap between one step's end and the next one's start is stall only where the host was
    waiting for the batch: GPU work queued between steps (here 7 ms, e.g. an EMA update) is neither."""
    gpu = FakeGpu()
    meter = StepMeter(timer=EventTimer(lambda: FakeEvent(gpu), clock=gpu.clock))
    meter.begin_window("epoch")
    for _ in meter.wrap(range(3)):
        with meter.step():
            gpu.launch(10)
        gpu.launch(7)  # outside meter.step()
    window = meter.end_window("epoch")
    assert window.compute_s == pytest.approx(0.030)
    assert window.fetch_stall_s == 0  # range() hands out its items at once
    assert window.host_overhead_s == pytest.approx(0.014)  # the 7 ms after steps 0 and 1, before steps 1 and 2


def test_lazy_stall_is_the_hosts_wait_where_the_gpu_sat_idle_and_the_rest_of_the_gap_host_overhead():
    """On a GPU the idle gap before a step is split: the part the host spent waiting for the batch is fetch
    stall; host work after the batch arrived (optimizer bookkeeping, launches) is host overhead."""
    gpu = FakeGpu()
    seen = []  # type: List[BatchTiming]
    meter = StepMeter(timer=EventTimer(lambda: FakeEvent(gpu), clock=gpu.clock), on_batch=seen.append)

    def loader():
        for wait_ms in (0, 30, 2):
            gpu.host_ms += wait_ms
            yield wait_ms

    meter.begin_window("epoch")
    for _ in meter.wrap(loader()):
        gpu.host_ms += 4  # host work between the batch's arrival and the step: the GPU idles through it
        with meter.step():
            gpu.launch(10)
    window = meter.end_window("epoch")
    # GPU: step 0 at 4..14 (idle 0..4: host work); the host waits 4..34, works 34..38, step 1 at 38..48: the
    # GPU idled 14..38, 20 ms of it while the host waited; step 2 is queued at 44, before step 1 ends: no gap,
    # so no stall although the host waited 2 ms
    assert [t.fetch_stall_s * 1000 for t in seen] == pytest.approx([0, 20, 0])
    assert [t.host_overhead_s * 1000 for t in seen] == pytest.approx([4, 4, 0])
    assert window.host_overhead_s == pytest.approx(0.008)


def test_events_are_recorded_on_the_run_devices_stream(monkeypatch):
    gpu = FakeGpu()
    streams = []
    monkeypatch.setattr(torch.cuda, "Event", lambda enable_timing: FakeEvent(gpu))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: streams.append(device) or "stream")
    meter = StepMeter("cuda:1", "lazy")
    for _ in meter.wrap(range(2)):
        with meter.step():
            gpu.launch(10)
    assert streams and set(streams) == {torch.device("cuda:1")}


def test_batches_in_flight_at_a_window_boundary_belong_to_the_earlier_window():
    gpu = FakeGpu()
    meter = StepMeter(timer=EventTimer(lambda: FakeEvent(gpu), clock=gpu.clock))
    meter.begin_window("run")
    meter.begin_window("first")
    for _ in meter.wrap(range(3)):
        with meter.step():
            gpu.launch(10)
    first = meter.end_window("first")
    meter.begin_window("second")
    for _ in meter.wrap(range(2)):
        with meter.step():
            gpu.launch(10)
    second = meter.end_window("second")
    run = meter.end_window("run")
    assert (first.batches, second.batches, run.batches) == (3, 2, 5)
    assert run.compute_s == pytest.approx(first.compute_s + second.compute_s) == pytest.approx(0.05)


def test_sync_mode_synchronizes_at_every_batch_boundary():
    calls = []
    seen = []  # type: List[BatchTiming]
    meter = StepMeter(timer=ClockTimer(sync=lambda: calls.append(1)), on_batch=seen.append)
    for _ in meter.wrap(range(4)):
        with meter.step():
            pass
    assert len(seen) == 4
    assert len(calls) == 1 + 3 * 4  # iteration start, then fetch end, step begin and step end per batch


def test_none_mode_reports_no_batches_but_still_wall_time():
    seen = []  # type: List[BatchTiming]
    meter = StepMeter("cpu", "none", on_batch=seen.append)
    meter.begin_window("epoch")
    for _ in meter.wrap(range(3)):
        with meter.step():
            pass
    window = meter.end_window("epoch")
    assert seen == [] and window.batches == 0 and window.duration_s > 0


def test_make_timer_picks_the_mode_without_touching_cuda():
    assert isinstance(make_timer("cpu", "lazy"), ClockTimer)
    assert make_timer("cpu", "sync")._sync is None  # CPU work is synchronous: nothing to wait for
    assert isinstance(make_timer("cuda", "lazy"), EventTimer)
    assert make_timer("cuda", "sync")._sync is not None
    assert isinstance(make_timer("cuda", "none"), NullTimer)
    assert make_timer("cuda", "none")._sync is not None  # a window's wall time waits for the GPU
    assert make_timer("cpu", "none")._sync is None
    with pytest.raises(ValueError, match="timing must be one of"):
        make_timer("cpu", "events")


def test_window_misuse_is_refused():
    meter = StepMeter("cpu")
    meter.begin_window("epoch")
    with pytest.raises(ValueError, match="already open"):
        meter.begin_window("epoch")
    with pytest.raises(ValueError, match="never begun"):
        meter.end_window("run")


def test_load_times_ride_with_their_batch_and_split_its_stall_in_proportion():
    """Lazy timing resolves steps later; each resolved step still gets its own batch's LoadTimes."""
    gpu = FakeGpu()
    seen = []  # type: List[BatchTiming]
    meter = StepMeter(timer=EventTimer(lambda: FakeEvent(gpu), clock=gpu.clock), on_batch=seen.append)
    loads = [(5, LoadTimes(0.004, 0.001)), (25, LoadTimes(0.0, 0.002)), (10, LoadTimes(0.0, 0.0)),
             (40, LoadTimes(0.003, 0.001))]  # (host ms to fetch, the worker's read and preprocess seconds)

    def loader():
        for load_ms, times in loads:
            gpu.host_ms += load_ms
            yield "images", "targets", times

    meter.begin_window("epoch")
    for batch in meter.wrap(loader()):
        assert batch == ("images", "targets")  # the loop never sees the LoadTimes
        with meter.step():
            gpu.launch(10)
    window = meter.end_window("epoch")
    # GPU timeline: starts 5, 30, 40, 80; stalls 5, 15, 0, 30 ms
    assert [t.fetch_stall_s * 1000 for t in seen] == pytest.approx([5, 15, 0, 30])
    assert [t.read_s for t in seen] == [0.004, 0.0, 0.0, 0.003]
    assert [t.fetch_stall_storage_s * 1000 for t in seen] == pytest.approx([4, 0, 0, 22.5])
    assert [t.fetch_stall_preprocess_s * 1000 for t in seen] == pytest.approx([1, 15, 0, 7.5])
    assert window.fetch_stall_storage_s + window.fetch_stall_preprocess_s == pytest.approx(window.fetch_stall_s)
    assert window.fetch_stall_storage_s == pytest.approx(0.0265)
    assert window.read_s == pytest.approx(0.007) and window.preprocess_s == pytest.approx(0.004)


def test_a_stall_is_split_only_where_the_loader_said_what_it_did():
    assert BatchTiming(0.01, 0.02, 0.03, storage_share=0.0).stall_split() == (0.0, 0.01)
    assert BatchTiming(0.01, 0.02, 0.03, storage_share=0.25).stall_split() == pytest.approx((0.0025, 0.0075))
    assert BatchTiming(0.01, 0.02, 0.03).fetch_stall_storage_s is None


@pytest.mark.parametrize("timing", ["lazy", "none"])
def test_a_loader_without_load_times_gives_none_not_zeros(timing):
    seen = []  # type: List[BatchTiming]
    meter = StepMeter("cpu", timing, on_batch=seen.append)
    meter.begin_window("epoch")
    for batch in meter.wrap([(1, 2), (3, 4), [5, 6, LoadTimes(0.1, 0.1)]]):
        with meter.step():
            pass
    window = meter.end_window("epoch")
    assert batch == [5, 6]  # a list stays a list
    assert [t.read_s for t in seen] == ([None, None, 0.1] if timing == "lazy" else [])
    # a window where some batch came without LoadTimes has no sums: they would be partial
    assert (window.read_s, window.preprocess_s, window.fetch_stall_storage_s, window.fetch_stall_preprocess_s) \
        == (None, None, None, None)
    assert (window.timeline is None) == (timing == "none")  # none mode keeps nothing per batch
