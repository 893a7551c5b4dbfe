"""PowerTrain's question: of the configurations measured for a device × workload
(power modes, batch sizes, workers, storage), which are worth running? The
time-per-epoch vs energy-per-epoch Pareto front and the pick under a power or
a time budget, with the epoch-to-epoch spread taken seriously: each point's
bar is the one the report prints, its kept epochs' spread widened by Student's
t for their number (trainer.calibration.spread_bar); a point dominates another
only beyond both bars, energy's widened by its bound (inside them the two
tie), and a budget is met by the upper end of a point's bar. A configuration
with one kept epoch is under-measured: its spread is unknown, not zero, so it
neither dominates nor is dominated (it ties) and fits no budget.

Only configurations a user can choose are points: measurement passes
(``--profile``'s synthetic, cold and cached passes, a page cache evicted or
warmed on purpose) feed the what-ifs instead, runs whose power came from a
replayed log (the exporter's demo, the trainer's --tegrastats-file) are drawn
marked but never advise, and runs over part of an epoch (--max-batches, a
framework's window) are compared only with runs over the same samples."""
from typing import Dict, List, Optional, Tuple

from report.configuration import VARIES, WORKLOAD, configuration_text, not_a_choice, of_record, part_of_an_epoch, \
    workload, workload_text
from trainer import calibration


UNDER_MEASURED = "under-measured: one kept epoch, no spread to fit a budget on"


def _point(row: dict) -> dict:
    """A comparison row as a point; each spread is the bar the report prints and budgets are checked on: the
    row's kept epochs' spread × Student t for their number (3 epochs of ± 1 s reach 1.32 s, not 1 s)."""
    def bar(name: str) -> float:
        return calibration.spread_bar(row[name]["std"], row["epochs"])
    return {"configuration": row["configuration"], "measured_as": row.get("measured_as", {}),
            "storage": row["storage"], "runs": row["runs"],
            "e2e_seconds": row["e2e_seconds"]["mean"], "e2e_spread_seconds": bar("e2e_seconds"),
            "energy_joules": row["energy_joules"]["mean"], "energy_spread_joules": bar("energy_joules"),
            "energy_bound_joules": (row.get("energy_bound_joules") or {}).get("mean") or 0.0,
            "average_power_watts": row["average_power_watts"]["mean"],
            "power_spread_watts": bar("average_power_watts"), "under_measured": row["epochs"] == 1}


def _high(p: dict, name: str, *widths: str) -> float:
    return p[name] + sum(p.get(w) or 0.0 for w in widths)


def _low(p: dict, name: str, *widths: str) -> float:
    return p[name] - sum(p.get(w) or 0.0 for w in widths)


# each axis and how far a point's value may lie from its mean: its spread, and energy's bound (the energy
# counter's lag at the epoch's edges, report.window.increase_bound) beside it
AXES = (("e2e_seconds", ("e2e_spread_seconds",)), ("energy_joules", ("energy_spread_joules", "energy_bound_joules")))


def _dominates(a: dict, b: dict) -> bool:
    """a is better than b beyond both spreads (and bounds) in time or energy, and not worse beyond them in the
    other; never where either is under-measured (a lucky or unlucky single epoch proves nothing)."""
    if a["under_measured"] or b["under_measured"]:
        return False
    better = any(_high(a, n, *w) < _low(b, n, *w) for n, w in AXES)
    worse = any(_low(a, n, *w) > _high(b, n, *w) for n, w in AXES)
    return better and not worse


def _ties(a: dict, b: dict) -> bool:
    """a would dominate b on the means alone, but the spreads (and bounds) overlap, or one is under-measured:
    neither is better for sure."""
    on_means = all(a[n] <= b[n] for n, _ in AXES) and any(a[n] < b[n] for n, _ in AXES)
    return on_means and not _dominates(a, b)


def _name(p: dict) -> str:
    return "runs {}".format(", ".join(p["runs"]))


def recommend(points: List[dict], power_budget: Optional[float],
              time_budget: Optional[float]) -> Tuple[Optional[dict], str]:
    """The fastest configuration whose power (the upper end of its spread) fits ``power_budget``, or the
    least-energy one whose time (likewise) fits ``time_budget`` (both: least energy within both), wherever it
    lies; and which constraint binds, by how much. An under-measured one fits no budget: the upper end of a
    spread that is not there says nothing. (None, why) without a budget or when nothing fits."""
    if power_budget is None and time_budget is None:
        return None, ""

    def fits_power(p: dict) -> bool:
        return power_budget is None or (p["average_power_watts"] is not None
                                        and _high(p, "average_power_watts", "power_spread_watts") <= power_budget)

    def fits_time(p: dict) -> bool:
        return time_budget is None or _high(p, "e2e_seconds", "e2e_spread_seconds") <= time_budget

    fits = [p for p in points if not p["under_measured"] and fits_power(p) and fits_time(p)]
    least_energy = time_budget is not None
    key = (lambda p: (p["energy_joules"], p["e2e_seconds"])) if least_energy else \
        (lambda p: (p["e2e_seconds"], p["energy_joules"]))
    unconstrained = min(points, key=key)
    if not fits:
        return None, "nothing fits: {}".format(_binding(unconstrained, power_budget, time_budget))
    best = min(fits, key=key)
    if best is unconstrained:
        return best, "no constraint binds: the {} configuration fits".format(
            "least-energy" if least_energy else "fastest")
    if unconstrained["under_measured"]:
        return best, _binding(unconstrained, power_budget, time_budget)
    return best, "{} binds: {}".format("the time budget" if not fits_time(unconstrained) else "the power budget",
                                       _binding(unconstrained, power_budget, time_budget))


def _binding(p: dict, power_budget: Optional[float], time_budget: Optional[float]) -> str:
    if p["under_measured"]:
        return "{} is {}".format(_name(p), UNDER_MEASURED)
    parts = []
    if power_budget is not None and p["average_power_watts"] is not None:
        over = _high(p, "average_power_watts", "power_spread_watts") - power_budget
        if over > 0:
            parts.append("{} draws up to {:.2f} W, {:.2f} W over the {:g} W budget".format(
                _name(p), _high(p, "average_power_watts", "power_spread_watts"), over, power_budget))
    if time_budget is not None:
        over = _high(p, "e2e_seconds", "e2e_spread_seconds") - time_budget
        if over > 0:
            parts.append("{} takes up to {:.2f} s, {:.2f} s over the {:g} s budget".format(
                _name(p), _high(p, "e2e_seconds", "e2e_spread_seconds"), over, time_budget))
    return "; ".join(parts) or "{} has no power reading".format(_name(p))


def fronts(comparison: List[dict], power_budget: Optional[float] = None,
           time_budget: Optional[float] = None) -> Tuple[List[dict], List[str]]:
    """One entry per device × workload (report.configuration.WORKLOAD: model, dataset, image size, the samples
    of a full epoch and those each epoch covered; time and energy are per epoch of it): its points
    (``dominated`` beyond the spreads, ``ties`` within them, sorted by time), the recommendation and what binds
    it, and its ``replayed`` points (power replayed from a recording: listed and drawn, marked, never on the
    front nor recommended); and notes on the rows left out. Runs over part of an epoch are a workload of their
    own: compared only with each other, never recommended."""
    groups = {}  # type: Dict[Tuple[str, ...], Tuple[Dict[str, str], List[dict], List[dict]]]
    notes = []
    for row in comparison:
        what = "Pareto: {} {} {} left out".format(row["device"], row["model"], configuration_text(row["configuration"]))
        why = not_a_choice(row.get("measured_as", {}))
        if why:
            notes.append("{}: {}, not a way to train; it feeds the what-ifs".format(what, why))
            continue
        labels = of_record(row)
        if labels.get("epoch_samples") == VARIES:
            notes.append("{}: its epochs covered different numbers of samples, no one workload".format(what))
            continue
        point = _point(row)
        if point["e2e_seconds"] is None or point["energy_joules"] is None:
            notes.append("{}: mean E2E or energy missing".format(what))
            continue
        _, measured, replayed = groups.setdefault(_front_key(row), (labels, [], []))
        if row.get("power_replayed"):
            notes.append("{}: its power was replayed from a recorded log (the exporter's demo or the trainer's "
                         "--tegrastats-file), not measured: drawn marked, never on the front nor "
                         "recommended".format(what))
            replayed.append(dict(point, replayed=True, energy_spread_joules=None, power_spread_watts=None))
            continue
        measured.append(point)
    out = []
    for key, (labels, points, replayed) in sorted(groups.items()):
        device = key[0]
        for p in points:
            p["dominated"] = any(_dominates(q, p) for q in points if q is not p)
            p["ties"] = [_name(q) for q in points if q is not p and _ties(q, p)]
        points.sort(key=lambda p: (p["e2e_seconds"], p["energy_joules"]))
        partial = part_of_an_epoch(labels)
        if partial:
            best, binding = None, "no recommendation: {}".format(partial)
            notes.append("Pareto: {} {}: a front of its own, never compared with full epochs nor recommended: {} "
                         "(its times hold the loader's start-up and first batches in another proportion than a "
                         "full epoch's)".format(device, workload_text(labels), partial))
        elif not points:
            best, binding = None, "no recommendation: no configuration with measured power"
        else:
            best, binding = recommend(points, power_budget, time_budget)
            if best is None and (power_budget is not None or time_budget is not None):
                notes.append("Pareto: no configuration of {} {} fits the budget ({})".format(
                    device, workload_text(labels), binding))
        out.append({"device": device, "model": labels.get("model") or None,
                    "workload": {n: labels[n] for n in WORKLOAD if labels.get(n)},
                    "workload_text": workload_text(labels), "part_of_an_epoch": partial, "points": points,
                    "replayed": replayed, "power_budget_watts": power_budget,
                    "time_budget_seconds": time_budget, "recommendation": best, "binding": binding})
    return out, notes


def _front_key(record: dict) -> Tuple[str, ...]:
    """The front a comparison row belongs to: its device and workload."""
    return (record["device"],) + workload(of_record(record))


# what-ifs drawn beside the measured points: changes to this board's configuration (a faster board's compute
# would draw another board's power)
ON_THE_FRONT = ("dataset_cached", "workers_doubled", "workers_doubled_storage_scales", "storage_bps=")


def add_predicted_points(front_list: List[dict], rows: List[dict]) -> None:
    """Each front's ``predicted``: the what-ifs of its comparison rows (report.whatif, repeats pooled; not those
    of replayed power) as points with their error bars, labelled predicted; they are drawn and listed, never
    recommended."""
    for front in front_list:
        front["predicted"] = []
        key = (front["device"],) + workload(front["workload"])
        for record in rows:
            if _front_key(record) != key or not_a_choice(record.get("measured_as", {})) \
                    or record.get("power_replayed"):
                continue
            for name, prediction in record.get("what_if", {}).items():
                if not name.startswith(ON_THE_FRONT) or prediction["e2e_seconds"] is None \
                        or prediction["energy_joules"] is None:
                    continue
                front["predicted"].append({
                    "predicted": True, "what_if": name, "runs": record["runs"],
                    "configuration": record["configuration"], "e2e_seconds": prediction["e2e_seconds"],
                    "e2e_spread_seconds": prediction["e2e_spread_seconds"],
                    "energy_joules": prediction["energy_joules"],
                    "energy_spread_joules": prediction["energy_spread_joules"], "basis": prediction["basis"],
                    "model_error_ratio": prediction["model_error_ratio"]})
