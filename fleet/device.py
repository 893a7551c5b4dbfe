"""One simulated Jetson: its exporter and its trainer, advanced lazily to the
time of each scrape.

The exporter side replays a real tegrastats log through the exporter's own
parser (`parse_line`, `stats_samples`) and energy integrator (`PowerMeter`),
with this device's own phase (where in the log it starts, and when in the
second its lines arrive) and jitter (each line is late or early by up to
`jitter` seconds). Disk and page-cache series follow the training run. The
names, types and help texts come from the exporter's contract table, so the
simulator cannot drift from docs/metrics.md.

The trainer side is the trainer's own `TrainMetrics`: batches with per-device
stall and compute times feed its histograms, completed epochs its per-epoch
gauges; after the last epoch the run lingers with running=0, then the next
run starts under a new run_id, as repeated `edgescope-train` runs do.

Nothing here runs on its own: `exporter_text()` / `trainer_text()` first catch
up with the clock, so an idle device costs nothing between scrapes.
"""
import math
import random
import time
from typing import Callable, List, Optional, Sequence

from prometheus_client import CollectorRegistry, generate_latest

from exporter import __version__
from exporter.energy import PowerMeter
from exporter.metrics import Sample
from exporter.server import SnapshotCollector
from exporter.sources.tegrastats import TegraStats, parse_line, recorded_lines, stats_samples
from trainer.meter import BatchTiming, Window
from trainer.metrics import TrainMetrics

DISK_FOR_STORAGE = {"sd": "mmcblk0", "ssd": "nvme0n1", "hdd": "sda", "nvme": "nvme0n1"}
READ_BYTES_PER_SAMPLE = 3500.0  # a CIFAR-10 PNG is 2-3.5 kB: one read per sample
DATASET_BYTES = 140e6


def load_trace(path: str) -> List[TegraStats]:
    """Every tegrastats line of a log (comments and blanks skipped), parsed."""
    lines = [parse_line(ln) for ln in recorded_lines(path)]
    if not lines:
        raise ValueError("{} has no tegrastats lines".format(path))
    return lines


class Workload:
    """What one device's training looks like: the same for every run on it."""

    def __init__(self, rng: random.Random, epochs: int, batches_per_epoch: int, batch_size: int,
                 stall_s: float, compute_s: float, linger_s: float) -> None:
        self.rng = rng
        self.epochs = epochs
        self.batches_per_epoch = batches_per_epoch
        self.batch_size = batch_size
        self.stall_s = stall_s
        self.compute_s = compute_s
        self.linger_s = linger_s

    def batch(self, epoch: int) -> BatchTiming:
        """Epoch 0 reads from disk (more stall); later epochs hit the page cache."""
        stall = self.stall_s * (2.0 if epoch == 0 else 1.0) * self.rng.lognormvariate(0.0, 0.3)
        compute = self.compute_s * self.rng.lognormvariate(0.0, 0.05)
        overhead = 0.02 * compute
        return BatchTiming(stall, compute, stall + compute + overhead)


class SimulatedTrainer:
    """Runs back to back on one device, exposed through the trainer's TrainMetrics."""

    def __init__(self, device: str, work: Workload, start: float) -> None:
        self.device = device
        self.work = work
        self.runs_started = 0
        self.reads = 0.0  # dataset reads so far (the exporter's disk counters follow them)
        self.cache_ratio = 0.0
        self._new_run(start)

    def _new_run(self, start: float) -> None:
        self.runs_started += 1
        self.run_id = "{}-run{}".format(self.device, self.runs_started)
        self.metrics = TrainMetrics(self.run_id)
        w = self.work
        self.metrics.set_run_info({"model": "vgg11", "dataset": "cifar10", "batch_size": str(w.batch_size),
                                   "workers": "4", "prefetch_factor": "2", "pin_memory": "false",
                                   "timing": "lazy", "torch_device": "cuda", "device_name": self.device})
        self.metrics.running.set(1)
        self.epoch, self.batch_in_epoch = 0, 0
        self.epoch_start = self.clock = start
        self.stall_sum = self.compute_sum = 0.0
        self.finished_at = None  # type: Optional[float]
        self.pending = None  # type: Optional[BatchTiming]
        self.cache_ratio = 0.0

    def advance(self, now: float) -> None:
        """Play every batch (and epoch end, and run change) that finished by `now`."""
        w = self.work
        while True:
            if self.finished_at is not None:
                if now < self.finished_at + w.linger_s:
                    return
                self._new_run(self.finished_at + w.linger_s)
                continue
            if self.pending is None:
                self.pending = w.batch(self.epoch)
            timing = self.pending
            if self.clock + timing.batch_s > now:
                return
            self.pending = None
            self.clock += timing.batch_s
            self.metrics.observe_batch(timing)
            self.metrics.samples.inc(w.batch_size)
            self.stall_sum += timing.fetch_stall_s
            self.compute_sum += timing.compute_s
            self.batch_in_epoch += 1
            if self.epoch == 0:  # the first pass reads the dataset into the page cache
                self.reads += w.batch_size
                self.cache_ratio = self.batch_in_epoch / w.batches_per_epoch
            self.metrics.loss.set(2.3 * math.exp(-0.4 * (self.epoch + self.batch_in_epoch / w.batches_per_epoch)))
            if self.batch_in_epoch == w.batches_per_epoch:
                self._end_epoch()

    def _end_epoch(self) -> None:
        w = self.work
        window = Window("epoch", self.clock - self.epoch_start, self.stall_sum, self.compute_sum,
                        w.batches_per_epoch, self.epoch_start, self.clock)
        self.metrics.record_epoch(self.epoch, window, w.batches_per_epoch * w.batch_size)
        self.epoch += 1
        self.batch_in_epoch = 0
        self.epoch_start = self.clock
        self.stall_sum = self.compute_sum = 0.0
        if self.epoch == w.epochs:
            self.metrics.running.set(0)
            self.finished_at = self.clock
        else:
            self.metrics.epoch.set(self.epoch)

    def text(self, now: float) -> bytes:
        self.advance(now)
        return generate_latest(self.metrics.registry)


class SimulatedExporter:
    """A tegrastats-replaying exporter whose disk and page cache follow the trainer."""

    def __init__(self, trace: Sequence[TegraStats], storage: str, trainer: SimulatedTrainer,
                 rng: random.Random, start: float, line_interval: float, jitter: float) -> None:
        self.trace = trace
        self.disk = DISK_FOR_STORAGE.get(storage, "sda")
        self.trainer = trainer
        self.rng = rng
        self.line_interval = line_interval
        self.jitter = jitter
        self.meter = PowerMeter("tegrastats", replay=True)  # a replayed log: never mistaken for a board
        self.line = rng.randrange(len(trace))  # phase in the log
        self.next_line_at = start + rng.uniform(0.0, line_interval)  # phase within the interval
        self.latest = None  # type: Optional[TegraStats]
        self.latest_at = start
        self.disk_prev = (start, 0.0)
        self.read_iops = 0.0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(self.samples))

    def advance(self, now: float) -> None:
        while self.next_line_at <= now:
            st = self.trace[self.line]
            self.meter.integrate(self.next_line_at, st.rails_w)
            self.latest, self.latest_at = st, self.next_line_at
            self.line = (self.line + 1) % len(self.trace)
            self.next_line_at += self.line_interval + self.rng.uniform(-self.jitter, self.jitter)
        self.trainer.advance(now)
        t0, reads0 = self.disk_prev
        if now - t0 >= self.line_interval:  # iostat gauges over the last sampling interval
            self.read_iops = (self.trainer.reads - reads0) / (now - t0)
            self.disk_prev = (now, self.trainer.reads)

    def samples(self) -> List[Sample]:
        """The exporter's series for the state advance() left (what its Sampler would hold)."""
        # the exporter's own reason text while the first line has not arrived
        power_reason = "" if self.latest is not None else "no tegrastats line yet"
        out = [Sample("edgescope_exporter_build_info", {"version": __version__, "python": "sim"}, 1.0)]
        for source, reason in (("tegrastats", power_reason), ("diskstats", ""), ("pagecache", "")):
            out.append(Sample("edgescope_source_up", {"source": source}, 0.0 if reason else 1.0))
            if reason:
                out.append(Sample("edgescope_source_down_info", {"source": source, "reason": reason}, 1.0))
            else:
                out.append(Sample("edgescope_source_last_success_timestamp_seconds", {"source": source},
                                  self.latest_at))
        out += self.meter.samples()
        if self.latest is not None:
            out += stats_samples(self.latest)
        out += self._disk_samples() + self._cache_samples()
        return out

    def _disk_samples(self) -> List[Sample]:
        reads = self.trainer.reads
        read_iops = self.read_iops
        await_s = 0.0004
        d = {"disk": self.disk}
        return [
            Sample("edgescope_disk_reads_completed_total", d, reads),
            Sample("edgescope_disk_read_bytes_total", d, reads * READ_BYTES_PER_SAMPLE),
            Sample("edgescope_disk_read_time_seconds_total", d, reads * await_s),
            Sample("edgescope_disk_writes_completed_total", d, 0.0),
            Sample("edgescope_disk_written_bytes_total", d, 0.0),
            Sample("edgescope_disk_io_time_seconds_total", d, reads * await_s),
            Sample("edgescope_disk_read_iops", d, read_iops),
            Sample("edgescope_disk_read_bytes_per_second", d, read_iops * READ_BYTES_PER_SAMPLE),
            Sample("edgescope_disk_read_await_seconds", d, await_s if read_iops else 0.0),
            Sample("edgescope_disk_utilisation_ratio", d, min(1.0, read_iops * await_s)),
        ]

    def _cache_samples(self) -> List[Sample]:
        d = {"dataset": "/data/cifar10"}
        ratio = self.trainer.cache_ratio
        return [
            Sample("edgescope_dataset_size_bytes", d, DATASET_BYTES),
            Sample("edgescope_dataset_resident_bytes", d, ratio * DATASET_BYTES),
            Sample("edgescope_dataset_page_cache_ratio", d, ratio),
            Sample("edgescope_dataset_files", d, 50000.0),
            Sample("edgescope_dataset_scan_duration_seconds", d, 0.05),
            Sample("edgescope_dataset_scan_timestamp_seconds", d, self.latest_at),
        ]

    def text(self, now: float) -> bytes:
        self.advance(now)
        return generate_latest(self.registry)


class SimulatedDevice:
    """One board: identity labels, an exporter and a trainer on their own ports."""

    def __init__(self, index: int, name: str, device_type: str, storage: str, trace: Sequence[TegraStats],
                 seed: int, line_interval: float = 1.0, jitter: float = 0.05, epochs: int = 6,
                 epoch_seconds: float = 60.0, batch_seconds: float = 0.25, batch_size: int = 16,
                 linger_s: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self.index = index
        self.labels = {"device": name, "device_type": device_type, "storage": storage}
        self.clock = clock
        rng = random.Random(seed * 1000003 + index)
        start = clock()
        # Each board its own balance of data loading and compute (stall 5-40 % of a batch).
        stall_share = rng.uniform(0.05, 0.4)
        work = Workload(random.Random(rng.random()), epochs, max(1, int(round(epoch_seconds / batch_seconds))),
                        batch_size, batch_seconds * stall_share, batch_seconds * (1 - stall_share) / 1.02,
                        linger_s)
        self.trainer = SimulatedTrainer(name, work, start)
        self.exporter = SimulatedExporter(trace, storage, self.trainer, random.Random(rng.random()), start,
                                          line_interval, jitter)
        self.scrapes = {"exporter": 0, "trainer": 0}

    def render(self, role: str) -> bytes:
        """The /metrics body of this device's exporter or trainer, now."""
        self.scrapes[role] += 1
        now = self.clock()
        if role == "exporter":
            return self.exporter.text(now)
        self.exporter.advance(now)  # the trainer's disk reads and the exporter share one timeline
        return self.trainer.text(now)


def make_fleet(count: int, trace: Sequence[TegraStats], device_type: str, seed: int,
               prefix: str = "sim", **kwargs: float) -> List[SimulatedDevice]:
    """`count` devices named prefix-0000.., storage alternating sd / ssd."""
    storages = ("sd", "ssd")
    return [SimulatedDevice(i, "{}-{:04d}".format(prefix, i), device_type, storages[i % 2], trace, seed, **kwargs)
            for i in range(count)]

