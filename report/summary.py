"""Per-run summaries and the cross-run comparison: mean ± sample standard
deviation over the epochs kept (by default epoch 0, the warm-up, is left out
as in the reference method)."""
import statistics
from typing import Dict, List, Optional, Sequence, Tuple

from report import configuration
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
# What a replayed power log gives: its spread is the recording's, not this board's, so it is never reported as one.
REPLAYED = ("energy_joules", "energy_bound_joules", "average_power_watts")


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


def summarize(epochs: Sequence[Epoch], power_replayed: bool = False) -> Dict[str, Stat]:
    """Every field's mean ± std; energy and power of replayed power without a std (``power_replayed`` on the
    record says why)."""
    stats = {name: mean_std([getattr(e, name) for e in epochs]) for name in FIELDS}
    if power_replayed:
        for name in REPLAYED:
            stats[name]["std"] = None
    return stats


def described(labels: configuration.Labels) -> dict:
    """A record's configuration (the knobs without a column of their own), how it was measured, its context."""
    return {"configuration": {k: v for k, v in configuration.knobs(labels).items()
                              if k not in configuration.COLUMNS},
            "measured_as": configuration.measured_as(labels), "context": configuration.context(labels)}


def run_summary(run: Run, warmup_epochs: int) -> dict:
    chosen = kept(run.epochs, warmup_epochs)
    record = {"run_id": run.run_id, "device": run.device, "instance": run.instance, "device_type": run.device_type,
              "storage": run.storage, "model": run.model, "torch_device": run.info.get("torch_device"),
              "clock_offset_seconds": run.clock_offset_seconds, "epochs_included": [e.epoch for e in chosen],
              "power_replayed": run.power_replayed}
    record.update(described(run.labels))
    record.update(summarize(chosen, run.power_replayed))
    record["predicted"] = [e.predicted for e in chosen]  # the what-ifs' per-epoch replays (report.whatif)
    record["predicted_compute"] = [e.predicted_compute for e in chosen]  # and their compute
    record["bottleneck"], record["bottleneck_evidence"] = diagnose(record)
    return record


def _shared_context(members: Sequence[Run]) -> Tuple[Dict[str, str], List[str]]:
    """The context every run of a row shares, and the names of the labels whose values differ."""
    contexts = [configuration.context(r.labels) for r in members]
    names = sorted({k for c in contexts for k in c})
    differing = [k for k in names if len({c.get(k) for c in contexts}) > 1]
    return {k: contexts[0][k] for k in names if k not in differing}, differing


def comparison(runs: Sequence[Run], warmup_epochs: int) -> List[dict]:
    """One row per configuration (report.configuration: device, torch device, model, loader settings, power
    mode, storage, ...) and way of measuring it, pooling the kept epochs of every run with that key (repeated
    runs add epochs, not rows; a plan's name, a data directory or JetPack do not split them, they are
    context, and ``context_differs`` names those that differ within the row). Their what-ifs' replays pool
    too (report.whatif), so a row's spreads hold the drift between its runs as well as between epochs."""
    groups = {}  # type: Dict[configuration.Key, List[Run]]
    for run in runs:
        groups.setdefault(configuration.key(run.labels), []).append(run)
    rows = []
    for _, members in sorted(groups.items()):
        first = members[0]
        chosen = [e for run in members for e in kept(run.epochs, warmup_epochs)]
        row = {"device": first.device, "device_type": first.device_type, "storage": first.storage,
               "model": first.model, "torch_device": first.info.get("torch_device"),
               "runs": [r.run_id for r in members], "epochs": len(chosen),
               "power_replayed": any(r.power_replayed for r in members)}
        row.update(described(first.labels))
        row["context"], row["context_differs"] = _shared_context(members)
        row.update(summarize(chosen, row["power_replayed"]))
        row["predicted"] = [e.predicted for e in chosen]  # every run's replays: a row's what-ifs pool its repeats
        row["predicted_compute"] = [e.predicted_compute for e in chosen]
        row["bottleneck"], row["bottleneck_evidence"] = diagnose(row)
        rows.append(row)
    return rows
