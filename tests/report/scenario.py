"""A realistic synthetic bench, written as OpenMetrics for promtool's backfill:
trainer and exporter series exactly as docs/metrics.md names them, with the
target labels (job, instance, device, device_type, storage) Prometheus would
attach at scrape time. Everything the report should find is known exactly
here (``truth``), so the tests compare against ground truth, not against
themselves.

Bench: a Nano on an SD card (two repeated runs, one exporter restart in the
middle of an epoch), a Xavier NX on an SSD (two configurations, two disks, two
watched datasets) and an Orin whose exporter is not scraped (trainer data only).
"""
import math
from typing import Dict, List, Tuple

SCRAPE = 5.0  # seconds between scrapes, as a short scrape_interval would give
RESTART_AFTER_SCRAPE = 0.2  # the exporter restarts this long after a scrape


# Board power per device: base + swing·sin(2πt/period) watts.
WAVES = {"nano-1": (5.0, 2.0, 37.0), "nx-1": (11.0, 3.0, 23.0), "orin-1": (25.0, 4.0, 29.0)}


def power(device: str, t: float) -> float:
    """Board power (W) at unix time t: a different slow wave per device."""
    base, swing, period = WAVES[device]
    return base + swing * math.sin(2 * math.pi * t / period)


def energy(device: str, t: float) -> float:
    """Exact integral of power() from 0 to t (what a perfect counter reads)."""
    base, swing, period = WAVES[device]
    return base * t + swing * period / (2 * math.pi) * (1 - math.cos(2 * math.pi * t / period))


def interpolation_bound(device: str) -> float:
    """Largest error (J) of an epoch's energy from interpolating the counter
    linearly between scrapes at both edges: per edge at most Δt²/8 · max|dP/dt|."""
    _, swing, period = WAVES[device]
    return 2 * SCRAPE ** 2 / 8 * swing * 2 * math.pi / period


DISK_READ_RATES = {"nano-1": {"mmcblk0": 200.0}, "nx-1": {"nvme0n1": 300.0, "mmcblk0": 5.0}}
READ_SIZE = 65536.0
TARGETS = {
    "nano-1": {"device_type": "nano", "storage": "sd"},
    "nx-1": {"device_type": "xavier-nx", "storage": "ssd"},
    "orin-1": {"device_type": "agx-orin", "storage": "ssd"},
}
DATASETS = {"nano-1": ["/data/cifar"], "nx-1": ["/mnt/ssd/cifar", "/mnt/sd/other"]}
# The NX's first run carries the run_id edgescope-experiment gives a plan named
# "bench" (vgg11, batch 16, 4 workers, prefetch 2, power mode as is, location
# "ssd"), so the runner's report step can be tested against this bench too.
NX_RUN = "bench-vgg11-b16-w4-pf2-pm-asis-ssd"


class Bench:
    def __init__(self, base: float) -> None:
        self.base = base
        # run_id -> dict(device, info, epochs=[(start, end, stall, compute, samples)])
        self.runs = {}  # type: Dict[str, dict]
        self.restarts = {}  # type: Dict[str, float]  # device -> exporter restart time
        t = base + 60.0
        common = {"model": "vgg11", "dataset": "cifar10", "batch_size": "16", "prefetch_factor": "2",
                  "pin_memory": "false", "timing": "lazy", "torch_device": "cuda"}
        plan = [
            ("run-nano-a", "nano-1", dict(common, workers="4", data_dir="/data/cifar"), [61.3, 58.2, 57.9, 58.6]),
            ("run-nano-b", "nano-1", dict(common, workers="4", data_dir="/data/cifar"), [60.1, 57.7, 58.8, 58.1]),
            (NX_RUN, "nx-1", dict(common, workers="4", data_dir="/mnt/ssd/cifar"), [31.7, 28.4, 28.9, 28.2]),
            ("run-nx-b", "nx-1", dict(common, workers="2"), [35.2, 33.1, 33.6]),
            ("run-orin-a", "orin-1", dict(common, workers="4"), [12.4, 10.1, 10.3]),
        ]
        for run_id, device, info, durations in plan:
            info = dict(info, device_name=device)
            epochs = []
            start = t + 3.17
            for k, d in enumerate(durations):
                stall = round(0.18 * d + 0.7 * k, 3)
                compute = round(0.71 * d - 0.3 * k, 3)
                epochs.append((start, start + d, stall, compute, 50000.0))
                start = start + d + 0.41  # validation/checkpoint gap between epochs
            self.runs[run_id] = {"device": device, "info": info, "epochs": epochs}
            t = start + 45.0  # linger and the next run's start-up
        self.end = t + 60.0
        # The Nano's exporter restarts in the middle of run-nano-a's epoch 2.
        s2, e2 = self.runs["run-nano-a"]["epochs"][2][:2]
        mid = s2 + (e2 - s2) / 2
        self.restarts["nano-1"] = self.scrape_times(mid, mid + SCRAPE)[0] + RESTART_AFTER_SCRAPE

    def scrape_times(self, lo: float, hi: float) -> List[float]:
        first = math.ceil((lo - self.base) / SCRAPE)
        times = []
        k = first
        while self.base + k * SCRAPE <= hi:
            times.append(self.base + k * SCRAPE)
            k += 1
        return times

    def counter(self, device: str, t: float) -> float:
        """The exporter's energy counter as scraped at t (restarts from zero)."""
        restart = self.restarts.get(device)
        if restart is not None and t >= restart:
            return energy(device, t) - energy(device, restart)
        return energy(device, t) - energy(device, self.base)

    def true_epoch_energy(self, device: str, start: float, end: float) -> float:
        return energy(device, end) - energy(device, start)

    def page_cache(self, run_id: str, k: int) -> float:
        return min(1.0, 0.21 + 0.26 * k)

    def gpu_memory(self, run_id: str, k: int) -> float:
        """The GPU's share of the NX's RAM (bytes) through epoch k; the Nano's exporter publishes none."""
        return 1.5e9 + 2e8 * k

    def openmetrics(self) -> str:
        families = {}  # type: Dict[Tuple[str, str], List[str]]

        def add(family: str, kind: str, sample_name: str, labels: Dict[str, str], points: List[Tuple[float, float]]):
            text = ",".join('{}="{}"'.format(k, v) for k, v in sorted(labels.items()))
            lines = families.setdefault((family, kind), [])
            for ts, value in points:
                lines.append("{}{{{}}} {!r} {:.3f}".format(sample_name, text, value, ts))

        everything = self.scrape_times(self.base, self.end)
        for device, target in TARGETS.items():
            exporter = dict(target, device=device, job="edgescope-exporter", instance=device + ":9945")
            if device == "orin-1":
                continue  # its exporter is not scraped: trainer data only
            add("edgescope_board_energy_joules", "counter", "edgescope_board_energy_joules_total", exporter,
                [(ts, self.counter(device, ts)) for ts in everything])
            add("edgescope_board_power_watts", "gauge", "edgescope_board_power_watts", exporter,
                [(ts, power(device, ts)) for ts in everything])
            add("edgescope_exporter_interval_seconds", "gauge", "edgescope_exporter_interval_seconds", exporter,
                [(ts, 1.0) for ts in everything])  # its counter is exact at each scrape: a lag of 0 <= 1 s
            for disk, rate in DISK_READ_RATES[device].items():
                labels = dict(exporter, disk=disk)
                add("edgescope_disk_reads_completed", "counter", "edgescope_disk_reads_completed_total", labels,
                    [(ts, 1000.0 + rate * (ts - self.base)) for ts in everything])
                add("edgescope_disk_read_bytes", "counter", "edgescope_disk_read_bytes_total", labels,
                    [(ts, 7e6 + READ_SIZE * rate * (ts - self.base)) for ts in everything])
            for i, dataset in enumerate(DATASETS[device]):
                points = [(ts, self.cache_at(device, ts) if i == 0 else 0.05) for ts in everything]
                add("edgescope_dataset_page_cache_ratio", "gauge", "edgescope_dataset_page_cache_ratio",
                    dict(exporter, dataset=dataset), points)
            if device == "nx-1":
                add("edgescope_gpu_memory_bytes", "gauge", "edgescope_gpu_memory_bytes", exporter,
                    [(ts, self.epoch_value(device, ts, self.gpu_memory)) for ts in everything])
        for run_id, run in self.runs.items():
            device = run["device"]
            trainer = dict(TARGETS[device], device=device, job="edgescope-trainer", instance=device + ":9946",
                           run_id=run_id)
            first, last = run["epochs"][0][0] - 2.0, run["epochs"][-1][1] + 31.0  # 30 s linger
            live = self.scrape_times(first, last)
            add("edgescope_train_run_info", "gauge", "edgescope_train_run_info", dict(trainer, **run["info"]),
                [(ts, 1.0) for ts in live])
            for k, (start, end, stall, compute, samples) in enumerate(run["epochs"]):
                after = [ts for ts in live if ts > end]
                labels = dict(trainer, epoch=str(k))
                for name, value in (("start_timestamp_seconds", start), ("end_timestamp_seconds", end),
                                    ("duration_seconds", end - start), ("fetch_stall_seconds", stall),
                                    ("compute_seconds", compute), ("samples", samples)):
                    metric = "edgescope_train_epoch_" + name
                    add(metric, "gauge", metric, labels, [(ts, value) for ts in after])
        out = []
        for (family, kind), lines in families.items():
            out.append("# TYPE {} {}".format(family, kind))
            out.extend(lines)
        out.append("# EOF")
        return "\n".join(out) + "\n"

    def cache_at(self, device: str, t: float) -> float:
        """Page-cache ratio of the device's first dataset."""
        return self.epoch_value(device, t, self.page_cache)

    def epoch_value(self, device: str, t: float, value_of) -> float:
        """``value_of(run_id, k)``: constant within each epoch (and the gap after it) of whichever run is going on."""
        value = 0.0
        for run_id, run in self.runs.items():
            if run["device"] != device:
                continue
            for k, (start, _end, _s, _c, _n) in enumerate(run["epochs"]):
                if t > start:
                    value = value_of(run_id, k)
        return value
