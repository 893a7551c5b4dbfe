"""The trainer's Prometheus exposition: names and meanings as in docs/metrics.md."""
import os
import time
from typing import Any, Dict, Iterator, Optional, Tuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from exporter import atomicfile
from exporter.config import ConfigError
from exporter.server import MetricsServer, WebConfig, load_web_config, serve_registry
from trainer.errors import UsageError
from trainer.labels import RUN_INFO_LABELS
from trainer.meter import BatchTiming, Window

# Geometric, ratio 1.1, from just under 1 ms to 10.3 s (a CIFAR batch on an Orin to a VGG batch on a Nano):
# histogram_quantile's linear interpolation inside a bucket (lo, 1.1 lo] misplaces a steady value by at
# most q * 10 % (p50 5 %, p95 9.5 %); then 15, 20, 30 s to catch stragglers. 102 bounds + Inf: 103 buckets
# per histogram (docs/metrics.md gives the series cost).
BUCKET_RATIO = 1.1
BUCKETS = tuple(float("%.4g" % (0.001 * BUCKET_RATIO ** k)) for k in range(-1, 98)) + (15.0, 20.0, 30.0)

WALL_CLOCK = "edgescope_time_seconds"


class WallClock:
    """``edgescope_time_seconds`` read when the scrape is answered (node_exporter's node_time_seconds), so
    the monitoring host can tell this board's clock offset from the scrape's own timestamp."""

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(WALL_CLOCK, "")

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(WALL_CLOCK, "System wall-clock time in Unix seconds when the scrape was answered.",
                                value=time.time())


class _WithoutWallClock:
    """The registry minus the wall clock: a file is read long after it is written, so it carries no clock."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        return (metric for metric in self._registry.collect() if metric.name != WALL_CLOCK)


class TrainMetrics:
    """All trainer series for one run, in a registry of their own."""

    def __init__(self, run_id: str, context_labels: Tuple[str, ...] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.run_id = run_id
        run = ["run_id"]
        epoch = ["run_id", "epoch"]

        def histogram(name: str, doc: str, labelled: bool = True) -> Histogram:
            family = Histogram(name, doc, run, buckets=BUCKETS, registry=self.registry)
            return family.labels(run_id) if labelled else family

        def gauge(name: str, doc: str, labels: Tuple[str, ...] = ("run_id",)) -> Gauge:
            return Gauge(name, doc, list(labels), registry=self.registry)

        self.fetch_stall = histogram(
            "edgescope_train_fetch_stall_seconds",
            "Per batch: host time blocked waiting for the batch (loading and preprocessing not hidden "
            "behind compute); on a GPU only the part of that wait the GPU sat idle.")
        self.compute = histogram(
            "edgescope_train_compute_seconds",
            "Per batch: zero_grad + forward + backward + optimizer step.")
        self.batch = histogram(
            "edgescope_train_batch_seconds",
            "Per batch: end to end, from the previous step's end to this step's end.")
        # labelled at the first batch that carries load times: no empty histograms for a loader without them
        self._fetch_stall_storage = histogram(
            "edgescope_train_fetch_stall_storage_seconds",
            "Per batch: the part of the fetch stall charged to file reads: what the loader's processes making "
            "batches during the wait were doing (reads vs decode + augment + collate); with the preprocess part "
            "it adds up to the fetch stall.",
            labelled=False)
        self._fetch_stall_preprocess = histogram(
            "edgescope_train_fetch_stall_preprocess_seconds",
            "Per batch: the fetch stall minus its storage part: the share of decode + augment + collate.",
            labelled=False)
        self._stall_split_children = None  # type: Optional[Tuple[Any, Any]]
        self.samples = Counter("edgescope_train_samples", "Training samples processed.", run,
                               registry=self.registry).labels(run_id)
        self.epoch = gauge("edgescope_train_epoch", "The epoch in progress (0-based).").labels(run_id)
        self.running = gauge("edgescope_train_running",
                             "1 while training, 0 once the run has ended (finished, stopped or failed).").labels(run_id)
        self.loss = gauge("edgescope_train_loss",
                          "Mean training loss over the last logging window.").labels(run_id)
        self._epoch_fetch_stall = gauge("edgescope_train_epoch_fetch_stall_seconds",
                                        "Per completed epoch: sum of the per-batch fetch stall.", epoch)
        self._epoch_compute = gauge("edgescope_train_epoch_compute_seconds",
                                    "Per completed epoch: sum of the per-batch compute.", epoch)
        self._epoch_fetch_stall_storage = gauge(
            "edgescope_train_epoch_fetch_stall_storage_seconds",
            "Per completed epoch: sum of the per-batch fetch stall's storage part.", epoch)
        self._epoch_fetch_stall_preprocess = gauge(
            "edgescope_train_epoch_fetch_stall_preprocess_seconds",
            "Per completed epoch: sum of the per-batch fetch stall's preprocess part.", epoch)
        self._epoch_read = gauge(
            "edgescope_train_epoch_read_seconds",
            "Per completed epoch: wall time spent opening and reading sample files while making its batches, "
            "summed over the loader's workers (the main process without workers).", epoch)
        self._epoch_preprocess = gauge(
            "edgescope_train_epoch_preprocess_seconds",
            "Per completed epoch: wall time spent decoding, augmenting and collating its batches, summed over "
            "the loader's workers (the main process without workers).", epoch)
        self._epoch_host_overhead = gauge(
            "edgescope_train_epoch_host_overhead_seconds",
            "Per completed epoch: time between steps that was neither waiting for data nor compute: the host's "
            "own work (optimizer bookkeeping, launches, logging); on a GPU, its idle time not spent waiting for "
            "data.", epoch)
        self._epoch_loader_startup = gauge(
            "edgescope_train_epoch_loader_startup_seconds",
            "Per completed epoch: the loader's start-up, iter(loader) (forking workers, sending the first "
            "indices); out of the stall.", epoch)
        self._epoch_loader_shutdown = gauge(
            "edgescope_train_epoch_loader_shutdown_seconds",
            "Per completed epoch: the loader's end, the last next() and its workers' teardown; out of the stall.",
            epoch)
        self._epoch_io = [gauge(
            "edgescope_train_epoch_" + name,
            "Per completed epoch: " + doc + ", by the processes that made its batches (the DataLoader workers, or the "
            "main process without workers), from /proc/<pid>/io; absent where the kernel keeps no I/O accounting.",
            epoch) for name, doc in (
                ("io_read_bytes", "bytes the run itself caused to be read from storage (page-cache hits excluded)"),
                ("io_rchar_bytes", "bytes the run's read calls returned (page cache included)"),
                ("io_read_syscalls", "read system calls the run made"))]
        self._epoch_predicted = gauge(
            "edgescope_train_epoch_predicted_duration_seconds",
            "Per completed epoch: its wall time replayed through the DataLoader's scheduling with one change "
            "(what_if: dataset_cached, workers_doubled, storage_bps=N, compute_speedup=K); absent where not "
            "predicted.", ("run_id", "epoch", "what_if"))
        self._epoch_predicted_compute = gauge(
            "edgescope_train_epoch_predicted_compute_seconds",
            "Per completed epoch: its compute under the what_if of edgescope_train_epoch_predicted_duration_seconds "
            "(as measured where the change leaves the steps alone; scaled where workers share the CPUs or "
            "compute_speedup=K); a measured run of the change shows against it how far the machine's speed moved.",
            ("run_id", "epoch", "what_if"))
        self._epoch_duration = gauge("edgescope_train_epoch_duration_seconds",
                                     "Per completed epoch: end to end wall time.", epoch)
        self._epoch_samples = gauge("edgescope_train_epoch_samples",
                                    "Per completed epoch: samples trained.", epoch)
        self._epoch_start = gauge("edgescope_train_epoch_start_timestamp_seconds",
                                  "Unix time the epoch started.", epoch)
        self._epoch_end = gauge("edgescope_train_epoch_end_timestamp_seconds",
                                "Unix time the epoch ended.", epoch)
        self._epoch_energy = gauge("edgescope_train_epoch_energy_joules",
                                   "Per completed epoch: board energy from its start to its end, measured by "
                                   "the trainer at the epoch's edges (absent where unmeasured).", epoch)
        self._epoch_energy_bound = gauge("edgescope_train_epoch_energy_bound_joules",
                                         "Per completed epoch: how far its energy can be off, from how it was "
                                         "read (absent where unmeasured or not known).", epoch)
        self._epoch_power_replayed = gauge(
            "edgescope_train_epoch_power_replayed",
            "Per completed epoch: 1 where its energy came from a recorded power log played back (a tegrastats "
            "--tegrastats-file, here or in the exporter read), not from this board; 0 where measured (absent "
            "where unmeasured).", epoch)
        self._epoch_power = gauge("edgescope_train_epoch_average_power_watts",
                                  "Per completed epoch: that energy divided by the time between the two "
                                  "readings at the epoch's edges (absent where unmeasured).", epoch)
        self._run_info = gauge("edgescope_train_run_info", "The run's configuration (value 1).",
                               ("run_id",) + RUN_INFO_LABELS + tuple(context_labels))
        self.registry.register(WallClock())

    def observe_batch(self, timing: BatchTiming) -> None:
        self.fetch_stall.observe(timing.fetch_stall_s)
        self.compute.observe(timing.compute_s)
        self.batch.observe(timing.batch_s)
        split = timing.stall_split()
        if split is not None:
            if self._stall_split_children is None:  # labelled once, at the first batch with load times
                self._stall_split_children = (self._fetch_stall_storage.labels(self.run_id),
                                              self._fetch_stall_preprocess.labels(self.run_id))
            for child, seconds in zip(self._stall_split_children, split):
                child.observe(seconds)

    def set_run_info(self, labels: Dict[str, str]) -> None:
        """``energy_source``, ``dataset_samples`` and ``dataset_id`` may be left out: a loop that measures no energy,
        or does not know how many samples a full epoch of its dataset holds or which files it reads, need not say
        so."""
        self._run_info.labels(run_id=self.run_id, **dict(
            {"energy_source": "none", "dataset_samples": "none", "dataset_id": "none"}, **labels)).set(1)

    def record_epoch(self, epoch: int, window: Window, samples: int, measured: bool = True,
                     energy_joules: Optional[float] = None, average_power_watts: Optional[float] = None,
                     predicted: Optional[Dict[str, Optional[float]]] = None,
                     energy_bound_joules: Optional[float] = None,
                     predicted_compute: Optional[Dict[str, Optional[float]]] = None,
                     power_replayed: bool = False) -> None:
        """``measured`` False (``--timing none``): no stall or compute series rather than false zeros;
        energy None (nothing measured it): no energy or power series; the window's load times None (the loader
        sent none): no stall split, read or preprocess series."""
        labels = (self.run_id, str(epoch))
        if measured:
            self._epoch_fetch_stall.labels(*labels).set(window.fetch_stall_s)
            self._epoch_compute.labels(*labels).set(window.compute_s)
            for gauge, value in ((self._epoch_fetch_stall_storage, window.fetch_stall_storage_s),
                                 (self._epoch_fetch_stall_preprocess, window.fetch_stall_preprocess_s),
                                 (self._epoch_read, window.read_s), (self._epoch_preprocess, window.preprocess_s)):
                if value is not None:
                    gauge.labels(*labels).set(value)
            for gauge, value in ((self._epoch_host_overhead, window.host_overhead_s),
                                 (self._epoch_loader_startup, window.loader_startup_s),
                                 (self._epoch_loader_shutdown, window.loader_shutdown_s)):
                gauge.labels(*labels).set(value)
            for gauge, value in zip(self._epoch_io, (window.io_read_bytes, window.io_rchar_bytes,
                                                    window.io_read_syscalls)):
                if value is not None:
                    gauge.labels(*labels).set(value)
        for gauge, values in ((self._epoch_predicted, predicted), (self._epoch_predicted_compute, predicted_compute)):
            for what_if, seconds in (values or {}).items():
                if seconds is not None:
                    gauge.labels(*labels, what_if).set(seconds)
        if energy_joules is not None:
            self._epoch_energy.labels(*labels).set(energy_joules)
            self._epoch_power_replayed.labels(*labels).set(1 if power_replayed else 0)
            if energy_bound_joules is not None:
                self._epoch_energy_bound.labels(*labels).set(energy_bound_joules)
        if average_power_watts is not None:
            self._epoch_power.labels(*labels).set(average_power_watts)
        self._epoch_duration.labels(*labels).set(window.duration_s)
        self._epoch_samples.labels(*labels).set(samples)
        self._epoch_start.labels(*labels).set(window.start_time)
        self._epoch_end.labels(*labels).set(window.end_time)

    def write_textfile(self, path: str) -> None:
        """Writes the exposition atomically (node_exporter reads it at any moment; a full disk keeps the last
        one whole); a failure is one UsageError line."""
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            atomicfile.write_bytes(path, generate_latest(_WithoutWallClock(self.registry)))  # type: ignore[arg-type]
        except OSError as error:
            raise UsageError(atomicfile.cannot_write("metrics textfile", path, error,
                                                     "pick another --metrics-textfile"))


def load_web(path: Optional[str]) -> Optional[WebConfig]:
    """--web.config.file (the exporter's format) or None; a bad file is one UsageError line."""
    try:
        return load_web_config(path) if path else None
    except ConfigError as error:
        raise UsageError(str(error))


def start_server(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0",
                 web: Optional[WebConfig] = None) -> Optional[MetricsServer]:
    """The exporter's server (timeouts, TLS, basic auth, 404 off /metrics) on ``addr:port``, port 0 any free one
    (``.port`` says which); a negative port means no server (textfile only)."""
    if port < 0:
        return None
    try:
        return serve_registry((addr, port), registry, web)
    except OSError as error:
        raise UsageError("cannot serve metrics on {}:{} ({}); pick a free port with --metrics-port"
                         .format(addr, port, error.strerror or error))
