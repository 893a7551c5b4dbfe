"""A synthetic bench for the diagnosis, what-if and Pareto tests, written as
OpenMetrics for promtool's backfill: one board (nano-d, an SD card) running
runs one after another, each with known per-epoch trainer numbers (the stall
decomposition of docs/metrics.md included) and the exporter's disk counters at
known constant rates over the run. Every expected figure follows from RUNS."""
import math
from typing import Dict, List, NamedTuple, Tuple

SCRAPE = 5.0
DEVICE = "nano-d"
DATA_DIR = "/data/set"
DISK = "mmcblk0"
EPOCHS = 3


class Numbers(NamedTuple):
    """One epoch of the run (all its epochs alike) and the disk over the run."""
    e2e: float
    stall: float
    storage: float
    preprocess_stall: float
    compute: float
    read_s: float
    preprocess_s: float
    power: float
    disk_busy: float  # disk utilisation ratio
    read_bps: float
    cached: float  # page-cache ratio


# run_id -> (model, run_info labels beyond the common ones, numbers)
RUNS = {
    "cold-w2": ("resnet18", {"workers": "2", "page_cache": "dropped"},
                Numbers(50.0, 30.0, 27.0, 3.0, 18.0, 54.0, 10.0, 6.0, 0.9, 4e6, 0.1)),
    "cached-w2": ("resnet18", {"workers": "2", "page_cache": "kept"},
                  Numbers(23.5, 3.5, 0.5, 3.0, 18.0, 2.0, 10.0, 6.4, 0.01, 1e4, 1.0)),
    "cached-w2-5w": ("resnet18", {"workers": "2", "page_cache": "kept", "power_mode": "5W"},
                     Numbers(35.0, 4.0, 0.5, 3.5, 28.0, 2.0, 14.0, 4.0, 0.01, 1e4, 1.0)),
    "pre-w2": ("mobilenet", {"workers": "2", "page_cache": "kept", "cpu_count": "4"},
               Numbers(40.0, 20.0, 2.0, 18.0, 18.0, 4.0, 76.0, 5.0, 0.05, 2e5, 1.0)),
    "pre-w4": ("mobilenet", {"workers": "4", "page_cache": "kept", "cpu_count": "4"},
               Numbers(22.0, 2.5, 0.3, 2.2, 18.0, 4.0, 80.0, 5.5, 0.05, 2e5, 1.0)),
    "gpu-bound": ("vgg11", {"workers": "4"}, Numbers(30.0, 0.6, 0.3, 0.3, 28.0, 2.0, 4.0, 9.0, 0.02, 1e5, 1.0)),
    "mixed": ("alexnet", {"workers": "2"}, Numbers(20.0, 8.0, 4.0, 4.0, 11.0, 10.0, 10.0, 5.0, 0.6, 3e6, 0.5)),
    # its synthetic-input pass (--profile): the model's compute alone, no loader
    "mixed-synthetic": ("alexnet", {"workers": "2", "input": "synthetic", "profile_pass": "synthetic"},
                        Numbers(16.0, 0.1, 0.0, 0.0, 15.8, 0.0, 0.0, 5.5, 0.0, 0.0, 0.5)),
}
# run_id -> what_if -> the trainer's replayed epoch time for epochs 0, 1, 2 (None: not published that epoch)
PREDICTED = {
    "cold-w2": {"dataset_cached": (25.0, 22.8, 23.4), "workers_doubled": (49.0, 47.0, 48.0),
                "storage_bps=8e+06": (40.0, 38.0, 38.5), "compute_speedup=2": (41.0, 41.0, 41.2)},
    "pre-w2": {"workers_doubled": (20.0, 21.0, 21.4), "workers_doubled_storage_scales": (20.0, 20.9, 21.3)},
    "gpu-bound": {"dataset_cached": (29.0, 29.4, None)},
}
IDLE = Numbers(*([0.0] * len(Numbers._fields)))  # between runs: the disk rests
EPOCH_GAUGES = (("duration_seconds", "e2e"), ("fetch_stall_seconds", "stall"),
                ("fetch_stall_storage_seconds", "storage"), ("fetch_stall_preprocess_seconds", "preprocess_stall"),
                ("compute_seconds", "compute"), ("read_seconds", "read_s"), ("preprocess_seconds", "preprocess_s"),
                ("average_power_watts", "power"))


def _labels(labels: Dict[str, str]) -> str:
    return ",".join('{}="{}"'.format(k, v) for k, v in sorted(labels.items()))


class DiagnosisBench:
    def __init__(self, base: float) -> None:
        self.base = base
        self.spans = []  # type: List[Tuple[str, float, float]]  # run_id, region start, region end
        self.edges = {}  # type: Dict[str, List[Tuple[float, float]]]
        t = base + 60.0
        for run_id, (_, _, n) in RUNS.items():
            start = t + 30.0 + 0.37
            self.edges[run_id] = [(start + k * (n.e2e + 1.0), start + k * (n.e2e + 1.0) + n.e2e)
                                  for k in range(EPOCHS)]
            end = self.edges[run_id][-1][1] + 30.0
            self.spans.append((run_id, t, end))
            t = end
        self.end = t + 60.0

    def _numbers_at(self, t: float) -> Numbers:
        for run_id, lo, hi in self.spans:
            if lo <= t < hi:
                return RUNS[run_id][2]
        return IDLE

    def openmetrics(self) -> str:
        families = {}  # type: Dict[Tuple[str, str], List[str]]

        def add(family: str, kind: str, name: str, labels: Dict[str, str], points: List[Tuple[float, float]]):
            lines = families.setdefault((family, kind), [])
            lines += ["{}{{{}}} {!r} {:.3f}".format(name, _labels(labels), v, ts) for ts, v in points]

        scrapes = [self.base + k * SCRAPE for k in range(int(math.ceil((self.end - self.base) / SCRAPE)) + 1)]
        exporter = {"device": DEVICE, "device_type": "nano", "storage": "sd", "job": "edgescope-exporter",
                    "instance": DEVICE + ":9945"}
        busy, read, io_points, read_points, cache_points = 0.0, 1e6, [], [], []
        for ts in scrapes:
            n = self._numbers_at(ts)
            io_points.append((ts, busy))
            read_points.append((ts, read))
            cache_points.append((ts, n.cached))
            busy, read = busy + SCRAPE * n.disk_busy, read + SCRAPE * n.read_bps
        disk = dict(exporter, disk=DISK)
        add("edgescope_disk_io_time_seconds", "counter", "edgescope_disk_io_time_seconds_total", disk, io_points)
        add("edgescope_disk_read_bytes", "counter", "edgescope_disk_read_bytes_total", disk, read_points)
        add("edgescope_dataset_page_cache_ratio", "gauge", "edgescope_dataset_page_cache_ratio",
            dict(exporter, dataset=DATA_DIR), cache_points)
        add("edgescope_dataset_disk_info", "gauge", "edgescope_dataset_disk_info",
            dict(exporter, dataset=DATA_DIR, disk=DISK), [(ts, 1.0) for ts in scrapes])
        for run_id, (model, extra, n) in RUNS.items():
            trainer = dict(exporter, job="edgescope-trainer", instance=DEVICE + ":9946", run_id=run_id)
            edges = self.edges[run_id]
            info = dict(trainer, model=model, batch_size="32", data_dir=DATA_DIR, device_name=DEVICE, **extra)
            live = [ts for ts in scrapes if edges[0][0] - 2.0 <= ts <= edges[-1][1] + 31.0]
            add("edgescope_train_run_info", "gauge", "edgescope_train_run_info", info, [(ts, 1.0) for ts in live])
            for k, (start, end) in enumerate(edges):
                after = [ts for ts in live if ts > end]
                values = [("start_timestamp_seconds", start), ("end_timestamp_seconds", end),
                          ("energy_joules", n.power * n.e2e)] + [(g, getattr(n, f)) for g, f in EPOCH_GAUGES]
                for gauge, value in values:
                    metric = "edgescope_train_epoch_" + gauge
                    add(metric, "gauge", metric, dict(trainer, epoch=str(k)), [(ts, value) for ts in after])
                for what_if, seconds in PREDICTED.get(run_id, {}).items():
                    if seconds[k] is not None:
                        metric = "edgescope_train_epoch_predicted_duration_seconds"
                        add(metric, "gauge", metric, dict(trainer, epoch=str(k), what_if=what_if),
                            [(ts, seconds[k]) for ts in after])
        out = []
        for (family, kind), lines in families.items():
            out += ["# TYPE {} {}".format(family, kind)] + lines
        return "\n".join(out + ["# EOF"]) + "\n"
