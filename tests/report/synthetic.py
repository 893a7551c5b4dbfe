"""Runs as report.collect would return them, built in memory for the
renderers' and plots' tests (no Prometheus needed to lay out a page): n runs,
each its own device × configuration, sharing model, dataset and prefetch."""
import math
from typing import Dict, List, Optional

from report.collect import Collected, Epoch, Run
from report.render import build

BASE = 1795000000.0
DEVICES = [("nano-1", "nano", "sd"), ("nx-1", "xavier-nx", "ssd")]
WORKERS = [1, 2, 4, 8, 12]
BATCH_SIZES = [16, 32]


def run(k: int, epochs: int = 4, info: Optional[Dict[str, str]] = None, run_id: Optional[str] = None) -> Run:
    """The k-th run: device, workers and batch size vary with k; the rest is shared."""
    device, device_type, storage = DEVICES[k % len(DEVICES)]
    settings = {"model": "vgg11", "dataset": "cifar10", "prefetch_factor": "2", "pin_memory": "false",
                "workers": str(WORKERS[(k // 2) % len(WORKERS)]),
                "batch_size": str(BATCH_SIZES[(k // 10) % len(BATCH_SIZES)])}
    settings.update(info or {})
    name = run_id or "sweep-{}-w{}-b{}".format(device, settings["workers"], settings["batch_size"])
    result = Run(run_id=name, device=device, instance=device + ":9946", device_type=device_type, storage=storage,
                 info=settings)
    start = BASE + 1000.0 * k
    for e in range(epochs):
        e2e = 30.0 + 2.0 * k + (3.0 if e == 0 else 0.1 * e)
        stall, compute = 0.2 * e2e, 0.7 * e2e
        power = 5.0 + 0.3 * k
        result.epochs.append(Epoch(run_id=name, device=device, epoch=e, start=start, end=start + e2e,
                                   e2e_seconds=e2e, fetch_stall_seconds=stall, compute_seconds=compute,
                                   samples=50000.0, energy_joules=power * e2e, average_power_watts=power,
                                   energy_source="exporter", read_iops=200.0 + k, read_bytes_per_second=1.3e7,
                                   page_cache_ratio=min(1.0, 0.2 + 0.25 * e)))
        start += e2e + 0.4
    end = result.epochs[-1].end
    t = result.epochs[0].start
    while t <= end:
        result.power.append((t, 5.0 + 0.3 * k + math.sin(t / 7.0)))
        t += 5.0
    return result


def report(runs: List[Run], notes: Optional[List[str]] = None, warmup_epochs: int = 1) -> dict:
    return build(Collected(runs=runs, notes=list(notes or [])), warmup_epochs,
                 {"prometheus": "http://prometheus.example:9090", "since": BASE - 60.0, "until": BASE + 86400.0})


REFERENCE_MODELS = {"vgg11": 1843.27, "resnet18": 1128.64, "mobilenet_v3_small": 612.05}  # a Nano's E2E s an epoch


def reference_runs(board: str = "nano01") -> List[Run]:
    """experiment/plans/reference.yaml's six runs on one Jetson Nano, with its run ids (the longest an
    edgescope-experiment plan gives the reference sweep) and a Nano's magnitudes: epochs of 10 to 30 minutes,
    kilojoules, the SD card's reads and the replayed what-ifs."""
    runs = []
    for k, ((model, e2e), location) in enumerate((m, loc) for m in REFERENCE_MODELS.items() for loc in ("sd", "ssd")):
        name = "reference-{}-b16-w4-pf2-pm-MAXN-{}-{}".format(model, location, board)
        result = Run(run_id=name, device=board, instance=board + ":9946", device_type="nano", storage="sd",
                     info={"model": model, "dataset": "cifar10", "batch_size": "16", "workers": "4",
                           "prefetch_factor": "2", "pin_memory": "false", "power_mode": "MAXN",
                           "dataset_location": location, "plan": "reference"})
        start = BASE + 20000.0 * k
        for e in range(6):
            seconds = e2e * (1.08 if e == 0 else 1.0 + 0.004 * e)
            stall = (0.35 if location == "sd" else 0.12) * seconds
            result.epochs.append(Epoch(
                run_id=name, device=board, epoch=e, start=start, end=start + seconds, e2e_seconds=seconds,
                fetch_stall_seconds=stall, compute_seconds=seconds - stall - 3.21, samples=50000.0,
                energy_joules=6.73 * seconds, energy_bound_joules=12.4 + 0.1 * e, average_power_watts=6.73,
                energy_source="trainer", read_iops=812.4 - 3 * e, read_bytes_per_second=23.47e6,
                page_cache_ratio=0.412 + 0.01 * e, page_cache_lowest_ratio=0.105, disk_utilisation_ratio=0.874,
                fetch_stall_storage_seconds=0.9 * stall, fetch_stall_preprocess_seconds=0.1 * stall,
                predicted={"dataset_cached": seconds - 0.8 * stall + 1.3 * e, "workers_doubled": seconds - 0.4 * stall,
                           "workers_doubled_storage_scales": seconds - 0.7 * stall - e,
                           "compute_speedup=2": 0.5 * seconds + 0.6 * stall + e}))
            start += seconds + 12.0
        runs.append(result)
    return runs


def two_configurations(power_replayed: bool = True) -> List[Run]:
    """The quick start's pair: one board, 1 and then 2 loader workers, 4 epochs each, every epoch's what-ifs
    replayed; 1 worker is preprocessing-bound and its ``workers_doubled`` predicts what the 2-worker run measured
    (3.0 s against 3.1 s); power replayed from the demo log, as off a Jetson (every epoch marked, as
    report.collect marks them)."""
    runs = []
    for workers, e2e, stall in ((1, 4.6, 1.7), (2, 3.1, 0.15)):
        name = "quickstart-20261207T120000-w{}".format(workers)
        result = Run(run_id=name, device="host", instance="127.0.0.1:9946", device_type="workstation",
                     storage="ssd", power_replayed=power_replayed,
                     info={"model": "mobilenet_v3_small", "dataset": "imagefolder", "image_size": "32",
                           "batch_size": "16", "workers": str(workers), "prefetch_factor": "2",
                           "pin_memory": "false", "max_batches": "20", "torch_device": "cpu"})
        start = BASE + 100.0 * workers
        for e in range(4):
            seconds = e2e + (0.9 if e == 0 else 0.05 * e)
            result.epochs.append(Epoch(
                run_id=name, device="host", epoch=e, start=start, end=start + seconds, e2e_seconds=seconds,
                fetch_stall_seconds=stall, compute_seconds=seconds - stall - 0.05, samples=320.0,
                energy_joules=4.1 * seconds, energy_bound_joules=1.8, average_power_watts=4.1,
                energy_source="trainer", power_replayed=power_replayed, read_iops=0.0, read_bytes_per_second=0.0,
                page_cache_ratio=1.0, page_cache_lowest_ratio=1.0, disk_utilisation_ratio=0.01,
                fetch_stall_storage_seconds=0.02 * stall, fetch_stall_preprocess_seconds=0.98 * stall,
                predicted={"dataset_cached": seconds - 0.01, "workers_doubled": seconds - stall + 0.1 * (e % 2),
                           "workers_doubled_storage_scales": seconds - stall + 0.1 * (e % 2),
                           "compute_speedup=2": seconds - 0.4 * (seconds - stall) + 0.02 * e}))
            start += seconds + 0.5
        runs.append(result)
    return runs
