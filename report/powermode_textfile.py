"""The power-mode what-if (report.powermode_report) as a Prometheus text file for node_exporter's textfile collector
(edgescope-report --powermode-textfile): per workload, each mode it was measured in and each mode predicted for
it, so that the comparison dashboard can show them side by side. Written from the report's own ``power_modes``,
never computed again: the file says what the report says."""
from typing import Dict, List, Optional, Sequence, Tuple

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from trainer.mode import MODE_LABELS

# (series, help): the figures each measured or predicted mode may have, absent where it has none
SERIES = (
    ("edgescope_powermode_epoch_seconds",
     "A workload's epoch time (E2E) in a power mode: measured, the mean over the kept epochs of its runs in that "
     "mode; predicted, the power_mode=M what-if fitted to its measured modes (hollow: never measured)."),
    ("edgescope_powermode_epoch_energy_joules",
     "The same epoch's board energy: measured (never a replayed power log), or predicted (power model x "
     "predicted time; checked only against a fake board's clock-driven power); absent where unknown."),
    ("edgescope_powermode_time_error_ratio",
     "A predicted epoch time's bar: the largest |relative error| of the workload's leave-one-mode-out "
     "predictions of its measured modes; absent where none could be made."),
    ("edgescope_powermode_energy_error_ratio",
     "A predicted epoch energy's bar, as the time's; absent where none could be made."),
)
MODE = ("mode", "kind", "extrapolated") + MODE_LABELS  # the labels of a mode beside its workload's

Sample = Tuple[Dict[str, str], Tuple[Optional[float], ...]]  # labels, a value per SERIES (None: absent)


def _samples(power_modes: Sequence[dict]) -> List[Sample]:
    """Each workload's measured modes, then its predicted ones (a refused prediction: none)."""
    out = []  # type: List[Sample]
    for w in power_modes:
        for m in w["measured"]:
            out.append((_labels(w, m, "measured", ""), (m["e2e_seconds"], m["energy_joules"], None, None)))
        cv = w["cross_validation"]
        for p in w["predicted"]:
            if p["e2e_seconds"] is None:
                continue
            energy_bar = None if p["energy_joules"] is None else cv["energy_error_ratio"]
            out.append((_labels(w, p, "predicted", ", ".join(p["extrapolated"])),
                        (p["e2e_seconds"], p["energy_joules"], cv["time_error_ratio"], energy_bar)))
    return out


def _labels(workload: dict, mode: dict, kind: str, extrapolated: str) -> Dict[str, str]:
    labels = dict(workload["labels"], mode=mode["mode"], kind=kind, extrapolated=extrapolated)
    labels.update(mode["mode_labels"])
    return labels


def exposition(power_modes: Sequence[dict]) -> bytes:
    """The text file: one gauge per SERIES, labelled with the workload's labels (the union over the workloads,
    empty where one lacks a label: Prometheus drops empty labels) and the mode's."""
    found = _samples(power_modes)
    names = sorted({name for labels, _ in found for name in labels} | set(MODE))
    registry = CollectorRegistry()
    gauges = [Gauge(name, text, names, registry=registry) for name, text in SERIES]
    for labels, values in found:
        for gauge, value in zip(gauges, values):
            if value is not None:
                gauge.labels(**{name: labels.get(name, "") for name in names}).set(value)
    return generate_latest(registry)
