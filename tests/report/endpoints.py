"""Synthetic /metrics endpoints for the report's fault tests, speaking the
contract's names (docs/metrics.md): a trainer on a board clock of its own, and
an exporter whose counters are exact functions of time (known truth)."""
import math
import threading
import time
from typing import Dict, List, Optional, Tuple


def wave_energy(base: float, swing: float, period: float, t: float) -> float:
    """Exact integral from 0 to t of base + swing·sin(2πt/period) watts."""
    return base * t + swing * period / (2 * math.pi) * (1 - math.cos(2 * math.pi * t / period))


def _labels(labels: Dict[str, str]) -> str:
    return "{" + ",".join('{}="{}"'.format(k, v) for k, v in sorted(labels.items())) + "}" if labels else ""


def exposition(families: List[Tuple[str, str, List[Tuple[Dict[str, str], float]]]]) -> str:
    """Prometheus text format of (name, type, [(labels, value)])."""
    out = []
    for name, kind, samples in families:
        out.append("# TYPE {} {}".format(name, kind))
        out += ["{}{} {!r}".format(name, _labels(labels), float(value)) for labels, value in samples]
    return "\n".join(out) + "\n"


class Trainer:
    """A trainer's endpoint: run_info, the gauges of completed epochs and its
    wall clock, all on a board clock ``offset`` seconds off the real one."""

    def __init__(self, run_id: str, offset: float = 0.0, publish_clock: bool = True,
                 data_dir: str = "/data/cifar") -> None:
        self.run_id = run_id
        self.offset = offset
        self.publish_clock = publish_clock
        self.info = {"run_id": run_id, "model": "resnet18", "batch_size": "16", "workers": "2", "data_dir": data_dir}
        self.epochs = {}  # type: Dict[int, Dict[str, float]]
        self._lock = threading.Lock()

    def clock(self) -> float:
        return time.time() + self.offset

    def complete(self, epoch: int, start: float, end: float, **extra: float) -> None:
        """Publish a completed epoch; start and end are real (Prometheus host) times."""
        gauges = {"start_timestamp_seconds": start + self.offset, "end_timestamp_seconds": end + self.offset,
                  "duration_seconds": end - start, "fetch_stall_seconds": 0.1 * (end - start),
                  "compute_seconds": 0.8 * (end - start)}
        gauges.update(extra)
        with self._lock:
            self.epochs[epoch] = gauges

    def render(self) -> str:
        with self._lock:
            epochs = dict(self.epochs)
        families = [("edgescope_train_run_info", "gauge", [(self.info, 1.0)])]
        names = sorted({name for gauges in epochs.values() for name in gauges})
        for name in names:
            families.append(("edgescope_train_epoch_" + name, "gauge",
                             [({"run_id": self.run_id, "epoch": str(k)}, gauges[name])
                              for k, gauges in sorted(epochs.items()) if name in gauges]))
        if self.publish_clock:
            families.append(("edgescope_time_seconds", "gauge", [({}, self.clock())]))
        return exposition(families)


class Exporter:
    """An exporter's endpoint: board energy and power of a known wave, disk read
    counters at constant rates (a disk may appear only from a given time on),
    dataset -> disk info."""

    def __init__(self, base_w: float, swing_w: float = 1.5, period_s: float = 7.0,
                 disks: Optional[Dict[str, Tuple[float, float]]] = None,
                 dataset_disk: Optional[Tuple[str, str]] = None, interval_s: Optional[float] = 0.5) -> None:
        self.wave = (base_w, swing_w, period_s)
        self.interval_s = interval_s  # published as the exporter's sampling interval (None: an older exporter)
        self.t0 = time.time()
        self.disks = disks or {}  # disk -> (reads per second, real time it appears)
        self.dataset_disk = dataset_disk

    def energy(self, t: float) -> float:
        """What a perfect energy counter started at t0 reads at real time t."""
        return wave_energy(*self.wave, t) - wave_energy(*self.wave, self.t0)

    def render(self) -> str:
        now = time.time()
        base, swing, period = self.wave
        present = {d: (rate, since) for d, (rate, since) in self.disks.items() if now >= since}
        families = [
            ("edgescope_board_energy_joules_total", "counter", [({}, self.energy(now))]),
            ("edgescope_board_power_watts", "gauge", [({}, base + swing * math.sin(2 * math.pi * now / period))]),
            ("edgescope_disk_reads_completed_total", "counter",
             [({"disk": d}, rate * (now - self.t0)) for d, (rate, _) in sorted(present.items())]),
            ("edgescope_disk_read_bytes_total", "counter",
             [({"disk": d}, 4096 * rate * (now - self.t0)) for d, (rate, _) in sorted(present.items())]),
            ("edgescope_dataset_page_cache_ratio", "gauge", [({"dataset": "/data/cifar"}, 0.5)]),
        ]
        if self.interval_s is not None:  # its counter is exact at each scrape: a lag of 0 <= the interval
            families += [("edgescope_exporter_interval_seconds", "gauge", [({}, self.interval_s)]),
                         ("edgescope_power_source_info", "gauge", [({"source": "nvml", "replay": "false"}, 1.0)])]
        if self.dataset_disk:
            families.append(("edgescope_dataset_disk_info", "gauge",
                             [({"dataset": self.dataset_disk[0], "disk": self.dataset_disk[1]}, 1.0)]))
        return exposition(families)
