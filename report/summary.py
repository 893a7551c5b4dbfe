"""Per-run summaries and the cross-run comparison: mean ± sample standard
deviation over the epochs kept (by default epoch 0, the warm-up, is left out
as in the reference method)."""
import statistics
from typing import Dict, List, Optional, Sequence, Tuple

from report.collect import Epoch, Run
from report.diagnosis import diagnose

# The numbers reported for every epoch, in output order.
FIELDS = ("e2e_seconds", "fetch_stall_seconds", "compute_seconds", "stall_share", "energy_joules",
          "energy_bound_joules", "average_power_watts", "read_iops", "read_bytes_per_second", "page_cache_ratio",
          "page_cache_lowest_ratio", "gpu_memory_bytes",
          "fetch_stall_storage_seconds", "fetch_stall_preprocess_seconds", "read_seconds", "preprocess_seconds",
          "disk_utilisation_ratio", "host_overhead_seconds", "loader_startup_seconds", "loader_shutdown_seconds",
          "run_read_bytes_per_second")

Stat = Dict[str, Optional[float]]


def kept(epochs: Sequence[Epoch], warmup_epochs: int) -> List[Epoch]:
    return [e for e in epochs if e.epoch >= warmup_epochs]


def mean_std(values: Sequence[Optional[float]]) -> Stat:
    """Mean and sample std (n − 1). Unknown (None) if any value is unknown: a
    mean over the epochs that happen to have data would silently change what it
    averages. std is None for a single value."""
    if not values or any(v is None for v in values):
        return {"mean": None, "std": None}
    known = [float(v) for v in values]  # type: ignore
    return {"mean": statistics.mean(known), "std": statistics.stdev(known) if len(known) > 1 else None}


def summarize(epochs: Sequence[Epoch]) -> Dict[str, Stat]:
    return {name: mean_std([getattr(e, name) for e in epochs]) for name in FIELDS}


def run_summary(run: Run, warmup_epochs: int) -> dict:
    chosen = kept(run.epochs, warmup_epochs)
    record = {"run_id": run.run_id, "device": run.device, "instance": run.instance, "device_type": run.device_type,
              "storage": run.storage, "model": run.model, "configuration": dict(run.configuration),
              "torch_device": run.info.get("torch_device"), "clock_offset_seconds": run.clock_offset_seconds,
              "epochs_included": [e.epoch for e in chosen]}
    record.update(summarize(chosen))
    record["predicted"] = [e.predicted for e in chosen]  # the what-ifs' per-epoch replays (report.whatif)
    record["bottleneck"], record["bottleneck_evidence"] = diagnose(record)
    return record


def comparison(runs: Sequence[Run], warmup_epochs: int) -> List[dict]:
    """One row per device × model × configuration, pooling the kept epochs of
    every run with that key (repeated runs add epochs, not rows)."""
    groups = {}  # type: Dict[Tuple, List[Run]]
    for run in runs:  # the torch device is a knob too: CPU and CUDA runs of the same settings are two rows
        key = (run.device, run.device_type or "", run.storage or "", run.model or "", run.info.get("torch_device", ""),
               run.configuration)
        groups.setdefault(key, []).append(run)
    rows = []
    for (device, device_type, storage, model, torch_device, configuration), members in sorted(groups.items()):
        chosen = [e for run in members for e in kept(run.epochs, warmup_epochs)]
        row = {"device": device, "device_type": device_type or None, "storage": storage or None,
               "model": model or None, "torch_device": torch_device or None, "configuration": dict(configuration),
               "runs": [r.run_id for r in members], "epochs": len(chosen),
               "power_replayed": any(r.power_replayed for r in members)}
        row.update(summarize(chosen))
        row["bottleneck"], row["bottleneck_evidence"] = diagnose(row)
        rows.append(row)
    return rows
