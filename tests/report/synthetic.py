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
