"""What the framework callbacks share: one run's series, endpoint, results and energy, fed from hooks.

A callback reports four events: a batch arrived (``batch_arrived``), a micro-batch's work ended
(``micro_batch_done``, saying whether it ended an optimizer step), and an epoch's start and end. Each
optimizer step is one batch of the metric contract (docs/metrics.md): its fetch stall is the wait for its
micro-batches (from the previous step's end to each one's arrival, summed), its compute the work on them
up to the optimizer step's end. The timing is ``StepMeter``'s (a host clock on the CPU, CUDA events read
lazily on a GPU); the series are ``TrainMetrics``', the same as edgescope-train's.
"""
import collections
import socket
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence

from trainer.cli import new_run_id
from trainer.labels import RESERVED_LABELS, label_problem
from trainer.results import append_result, epoch_record
from trainer.energy import ExporterEnergy, epoch_energy, try_read
from trainer.meter import BatchTiming, LoadTimes, StepMeter
from trainer.metrics import TrainMetrics, start_server
from trainer.mode import current_mode
from trainer.timeline import window_what_ifs

# run_info labels the callbacks add to edgescope-train's: the framework and how it trains.
FRAMEWORK_LABELS = ("framework", "precision", "gradient_accumulation_steps")
# Knobs of a run's workload that edgescope-train sets itself but a framework's loop cannot be read for (its
# transforms are the user's): the user says them in ``labels``, or two image sizes of one dataset are one
# workload and pool as repeats.
USER_WORKLOAD_LABELS = {"image_size"}


class StepGrouper:
    """Sums the timings of each optimizer step's micro-batches (gradient accumulation) into one. Timings
    arrive in order but possibly after their step closed (lazy CUDA events), so step sizes wait in a queue."""

    def __init__(self, on_step: Callable[[BatchTiming], Any]) -> None:
        self._on_step = on_step
        self._sizes = collections.deque()  # type: Deque[int]
        self._parts = []  # type: List[BatchTiming]
        self._open = 0  # micro-batches of the step in progress

    def micro_batch_done(self, closes_step: bool) -> None:
        self._open += 1
        if closes_step:
            self._sizes.append(self._open)
            self._open = 0
            self._drain()

    def add(self, timing: BatchTiming) -> None:
        self._parts.append(timing)
        self._drain()

    def _drain(self) -> None:
        while self._sizes and len(self._parts) >= self._sizes[0]:
            size = self._sizes.popleft()
            parts, self._parts = self._parts[:size], self._parts[size:]
            self._on_step(merged(parts))


def merged(parts: Sequence[BatchTiming]) -> BatchTiming:
    """One optimizer step of several micro-batches: their times summed, the stall's storage share weighted by
    each one's stall (None where a micro-batch had no split: the loader timed nothing)."""
    stall = sum(p.fetch_stall_s for p in parts)
    share = None  # type: Optional[float]
    if all(p.storage_share is not None for p in parts):
        share = sum(p.fetch_stall_s * p.storage_share for p in parts) / stall if stall > 0 else 0.0  # type: ignore
    return BatchTiming(stall, sum(p.compute_s for p in parts), sum(p.batch_s for p in parts),
                       sum(p.host_overhead_s for p in parts), storage_share=share)


def label_value(value: Any) -> str:
    """A configuration value as edgescope-train writes it in run_info: booleans lower case, None "none"."""
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def samples_of(loader: Any) -> str:
    """run_info's ``dataset_samples``: the samples a full epoch of ``loader`` covers: its sampler's (a sampler may
    pick part of the dataset: a train/validation split), less a last partial batch that ``drop_last`` drops, so
    that a full epoch is never taken for part of one (report.configuration.part_of_an_epoch); "none" for a
    loader without a length (an iterable dataset)."""
    sampler = getattr(loader, "sampler", None)
    try:
        samples = len(sampler if sampler is not None else loader.dataset)
    except (TypeError, AttributeError):
        return "none"
    batches = getattr(loader, "batch_sampler", None)
    batch_size = getattr(batches, "batch_size", None)
    if getattr(batches, "drop_last", False) and isinstance(batch_size, int) and batch_size > 0:
        samples -= samples % batch_size
    return str(samples)


def checked_labels(labels: Optional[Dict[str, str]]) -> Dict[str, str]:
    """The user's extra run_info labels; a bad name is a ValueError naming it."""
    labels = dict(labels or {})
    reserved = (RESERVED_LABELS | set(FRAMEWORK_LABELS)) - USER_WORKLOAD_LABELS
    for key, value in labels.items():
        problem = label_problem(key, reserved) if isinstance(key, str) else "not text"
        if problem:
            raise ValueError("labels: {!r} is not usable ({}); name it otherwise".format(key, problem))
        labels[key] = str(value)
    return labels


class RunRecorder:
    """One training run seen through a framework's hooks. The endpoint starts with the first fit and
    keeps serving the final numbers until ``close()`` (or the process ends), so the last scrape sees them."""

    def __init__(self, run_id: Optional[str] = None, device_name: Optional[str] = None, metrics_port: int = 9946,
                 metrics_addr: str = "0.0.0.0", metrics_textfile: Optional[str] = None,
                 results: Optional[str] = None, exporter_url: Optional[str] = None,
                 labels: Optional[Dict[str, str]] = None) -> None:
        self.run_id = run_id or new_run_id()
        self.device_name = device_name or socket.gethostname()
        self.labels = checked_labels(labels)
        self.mode = current_mode().labels()  # the power mode's hardware (trainer.mode), as edgescope-train records it
        self.metrics = TrainMetrics(self.run_id, context_labels=tuple(sorted(FRAMEWORK_LABELS + tuple(self.labels)
                                                                            + tuple(self.mode))))
        self._port = metrics_port
        self._addr = metrics_addr
        self._textfile = metrics_textfile
        self._results = results
        self._exporter_url = exporter_url
        self.server = None  # type: Any
        self._energy = None  # type: Any
        self._meter = None  # type: Optional[StepMeter]
        self._grouper = StepGrouper(self._observe_step)
        self._config = {}  # type: Dict[str, str]
        self._epoch = None  # type: Optional[int]
        self._energy_start = ""  # type: Any
        self._steps = self._samples = self._losses = 0
        self._loss_sum = 0.0  # type: Any

    def start(self, device: Any, config: Dict[str, str]) -> None:
        """Training begins on ``device``; ``config``: the run_info labels the framework knows."""
        self._config = dict(config, timing="lazy", torch_device=str(getattr(device, "type", device)),
                            device_name=self.device_name, energy_source="exporter" if self._exporter_url else "none")
        self._config.update(self.labels)
        self._config.update(self.mode)
        self.metrics.set_run_info(self._config)
        if self.server is None:
            self.server = start_server(self.metrics.registry, self._port, self._addr)
        if self._exporter_url and self._energy is None:
            self._energy = ExporterEnergy(self._exporter_url)
        self._meter = StepMeter(device, "lazy", on_batch=lambda timing: self._grouper.add(timing))
        append_result(self._results, None)  # a bad path fails now, not after an epoch
        self.metrics.running.set(1)
        self._write_textfile()

    def begin_epoch(self, epoch: int, loader: Any = None) -> None:
        """``loader``: the epoch's DataLoader where the framework gives it (its workers shape the timeline)."""
        assert self._meter is not None, "start() first"
        self._epoch = epoch
        self._steps = self._samples = self._losses = 0
        self._loss_sum = 0.0  # type: Any
        self._grouper = StepGrouper(self._observe_step)  # a step left open by a stop does not span epochs
        self.metrics.epoch.set(epoch)
        self._energy_start = try_read(self._energy) if self._energy else ""
        self._meter.begin_window("epoch")
        self._meter.begin_iteration(loader)

    def batch_arrived(self, samples: int, load: Optional[LoadTimes] = None) -> None:
        """``load``: the batch's LoadTimes where the loader sent them (``trainer.data.make_loader(timed=True)``)."""
        assert self._meter is not None
        self._meter.batch_arrived(load)
        self._samples += samples
        self.metrics.samples.inc(samples)

    def micro_batch_done(self, closes_step: bool, loss: Any = None) -> None:
        """``loss``: the micro-batch's loss tensor, summed where it lies (no device sync per step)."""
        assert self._meter is not None
        self._meter.step_done()
        self._grouper.micro_batch_done(closes_step)
        if loss is not None:
            self._loss_sum = self._loss_sum + loss.detach()
            self._losses += 1

    def _observe_step(self, timing: BatchTiming) -> None:
        self._steps += 1
        self.metrics.observe_batch(timing)

    def end_epoch(self, complete: bool = True) -> None:
        """Publishes the epoch (only a complete one as epoch gauges, as edgescope-train does)."""
        if self._epoch is None or self._meter is None:
            return
        window = self._meter.end_window("epoch")
        predictions = window_what_ifs(window) if complete else {}
        loss = float(self._loss_sum / self._losses) if self._losses else None
        if loss is not None:
            self.metrics.loss.set(loss)
        used = epoch_energy(self._energy_start, try_read(self._energy), self._energy.broken) if self._energy else None
        record = epoch_record(self.run_id, self._epoch, complete, window, self._steps, self._samples, loss, True,
                              self._config, used, predictions)
        append_result(self._results, record)
        if complete:
            self.metrics.record_epoch(self._epoch, window, self._samples, True, record["energy_joules"],
                                      record["average_power_watts"], record["predicted_duration_s"],
                                      record["energy_bound_joules"], record["predicted_compute_s"],
                                      record["power_replayed"])
        self._epoch = None
        self._write_textfile()

    def finish(self) -> None:
        """Training ended, however: an epoch still open is recorded as interrupted."""
        self.end_epoch(complete=False)
        self.metrics.running.set(0)
        self._write_textfile()
        if self._energy:
            self._energy.close()
            self._energy = None

    def close(self) -> None:
        """Stops serving the endpoint."""
        if self.server is not None:
            self.server.close()
            self.server = None

    def _write_textfile(self) -> None:
        if self._textfile:
            self.metrics.write_textfile(self._textfile)
