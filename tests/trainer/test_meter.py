"""StepMeter logic: lazy CUDA-event resolution against a fake GPU timeline,
the sync and none modes, and windows. The fake event has torch.cuda.Event's
interface (record, query, elapsed_time in ms, synchronize)."""
from typing import List

import pytest
import torch

from trainer.meter import BatchTiming, ClockTimer, EventTimer, NullTimer, StepMeter, make_timer


class FakeGpu:
    """One CUDA stream: work runs in order, a marker completes when the GPU reaches it.
    ``host_ms`` is the host's clock; both clocks are in milliseconds."""

    def __init__(self) -> None:
        self.host_ms = 0.0
        self.busy_until_ms = 0.0
        self.synchronizations = 0

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
    meter = StepMeter(timer=EventTimer(lambda: FakeEvent(gpu)), on_batch=seen.append)
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


def test_lazy_mode_counts_gpu_work_outside_step_as_stall():
    """As documented: lazy stall is the stream's gap between one step's end and the next one's start,
    so GPU work queued between steps (here 7 ms, e.g. an EMA update) is stall, not compute."""
    gpu = FakeGpu()
    meter = StepMeter(timer=EventTimer(lambda: FakeEvent(gpu)))
    meter.begin_window("epoch")
    for _ in meter.wrap(range(3)):
        with meter.step():
            gpu.launch(10)
        gpu.launch(7)  # outside meter.step()
    window = meter.end_window("epoch")
    assert window.compute_s == pytest.approx(0.030)
    assert window.fetch_stall_s == pytest.approx(0.014)  # the 7 ms after steps 0 and 1, before steps 1 and 2


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
    meter = StepMeter(timer=EventTimer(lambda: FakeEvent(gpu)))
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
