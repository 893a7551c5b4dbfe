"""PowerTrain's question: of the configurations measured for a device × model
(power modes, batch sizes, workers, storage), which are worth running? The
time-per-epoch vs energy-per-epoch Pareto front, the dominated ones marked,
and the pick under a power or a time budget."""
from typing import Dict, List, Optional, Tuple

from report.whatif import synthetic_input


def _point(row: dict) -> dict:
    return {"configuration": row["configuration"], "storage": row["storage"], "runs": row["runs"],
            "e2e_seconds": row["e2e_seconds"]["mean"], "energy_joules": row["energy_joules"]["mean"],
            "average_power_watts": row["average_power_watts"]["mean"]}


def _dominates(a: dict, b: dict) -> bool:
    """a is no worse than b in both time and energy and better in one."""
    return (a["e2e_seconds"] <= b["e2e_seconds"] and a["energy_joules"] <= b["energy_joules"]
            and (a["e2e_seconds"] < b["e2e_seconds"] or a["energy_joules"] < b["energy_joules"]))


def recommend(points: List[dict], power_budget: Optional[float], time_budget: Optional[float]) -> Optional[dict]:
    """The front's fastest configuration within the power budget, or its
    least-energy one within the time budget (both: within both, least energy);
    None without a budget or when nothing fits."""
    if power_budget is None and time_budget is None:
        return None
    fits = [p for p in points if not p["dominated"]
            and (power_budget is None or (p["average_power_watts"] is not None
                                          and p["average_power_watts"] <= power_budget))
            and (time_budget is None or p["e2e_seconds"] <= time_budget)]
    if not fits:
        return None
    key = (lambda p: (p["energy_joules"], p["e2e_seconds"])) if time_budget is not None else \
        (lambda p: (p["e2e_seconds"], p["energy_joules"]))
    return min(fits, key=key)


def fronts(comparison: List[dict], power_budget: Optional[float] = None,
           time_budget: Optional[float] = None) -> Tuple[List[dict], List[str]]:
    """One entry per device × model: its points (``dominated`` marked, sorted
    by time) and the recommendation; and notes on the rows left out."""
    groups = {}  # type: Dict[Tuple[str, str], List[dict]]
    notes = []
    for row in comparison:
        if synthetic_input(row):
            notes.append("Pareto: {} {} {} left out: a synthetic-input pass (no data loaded), not a way to "
                         "train".format(row["device"], row["model"], row["configuration"]))
            continue
        point = _point(row)
        if point["e2e_seconds"] is None or point["energy_joules"] is None:
            notes.append("Pareto: {} {} {} left out: mean E2E or energy missing".format(
                row["device"], row["model"], row["configuration"]))
            continue
        groups.setdefault((row["device"], row["model"] or ""), []).append(point)
    out = []
    for (device, model), points in sorted(groups.items()):
        for p in points:
            p["dominated"] = any(_dominates(q, p) for q in points if q is not p)
        points.sort(key=lambda p: (p["e2e_seconds"], p["energy_joules"]))
        best = recommend(points, power_budget, time_budget)
        if best is None and (power_budget is not None or time_budget is not None):
            notes.append("Pareto: no configuration of {} {} on the front fits the budget".format(device, model))
        out.append({"device": device, "model": model or None, "points": points,
                    "power_budget_watts": power_budget, "time_budget_seconds": time_budget,
                    "recommendation": best})
    return out, notes
