"""The power_mode=M what-if in the report (report.powermode fits it): the comparison's rows grouped into
workloads measured in several modes, a prediction with its leave-one-mode-out bar for each mode they were not
measured in (a board's nvpmodel.conf, or another workload's modes), predicted points on the Pareto front and
"measure mode M next", and the notes."""
from typing import Dict, List, Optional, Sequence, Tuple

from report import configuration
from report.pareto import recommend
from report.powermode import MIN_MODES, Measured, Model, cross_validate, mode_name, predict
from trainer.mode import MODE_LABELS, Mode, parse_nvpmodel_conf

# the labels a power mode sets: a row apart from another only in these is the same workload in another mode
MODE_KNOBS = ("power_mode",) + MODE_LABELS
POWER_UNVERIFIED = ("; power unverified: the claim rests on a power model checked only against a fake board, never "
                    "a board's measured power")


def without_mode(labels: configuration.Labels) -> Dict[str, str]:
    """Labels (or a configuration) but the mode's: equal for the rows of one workload in several modes."""
    return {k: v for k, v in labels.items() if k not in MODE_KNOBS}


def _workload_key(row: dict) -> Tuple:
    return (row["device"],) + configuration.key(without_mode(configuration.of_record(row)))


def workloads(rows: Sequence[dict]) -> List[Tuple[List[dict], List[Measured]]]:
    """The comparison's rows grouped by everything but the mode (ways to train only), with >= 2 measured modes:
    (the group's rows, their measured modes, in the same order)."""
    groups = {}  # type: Dict[Tuple, Tuple[List[dict], List[Measured]]]
    for row in rows:
        if configuration.not_a_choice(row.get("measured_as", {})):
            continue
        measured = Measured.of_row(row)
        if measured is not None:
            group = groups.setdefault(_workload_key(row), ([], []))
            group[0].append(row)
            group[1].append(measured)
    return [group for _, group in sorted(groups.items(), key=lambda kv: kv[0]) if len(group[1]) >= MIN_MODES]


def _same(mode: Mode) -> Tuple[Tuple[str, str], ...]:
    """Equal for equal hardware (a Mode holds NaN, which equals nothing)."""
    return tuple(sorted(mode.labels().items()))


def mode_what_ifs(rows: Sequence[dict], candidates: Sequence[Tuple[str, Mode]] = ()) -> List[dict]:
    """Per workload with >= 2 measured modes: its labels, its measured modes, the terms they leave open, its
    cross-validation, and a prediction with that error bar for each mode in ``candidates`` (e.g. a board's
    nvpmodel.conf) or measured for another workload of the same device, that this one was not measured in."""
    groups = workloads(rows)
    keys = {id(r): _workload_key(r) for r in rows}
    out = []
    for group, measured in groups:
        row = group[0]
        seen = {_same(m.mode) for m in measured}
        targets = []  # type: List[Tuple[str, Mode]]
        for name, mode in list(candidates) + [(m.name, m.mode) for rs, ms in groups
                                              if rs[0]["device"] == row["device"] for m in ms]:
            if _same(mode) not in seen:
                seen.add(_same(mode))
                targets.append((name, mode))
        cv = cross_validate(measured)
        model = Model.fit(measured)
        predictions = []
        for name, mode in targets:
            p = predict(measured, mode, model)
            p.update(mode=name, mode_labels=mode.labels(),
                     e2e_spread_seconds=_bar(p["e2e_seconds"], cv["time_error_ratio"]),
                     energy_spread_joules=_bar(p["energy_joules"], cv["energy_error_ratio"]))
            predictions.append(p)
        key = keys[id(row)]
        labels = configuration.of_record(row)
        out.append({"device": row["device"], "workload_text": configuration.workload_text(labels),
                    "workload": {n: labels[n] for n in configuration.WORKLOAD if labels.get(n)},
                    "configuration": without_mode(row["configuration"]),
                    "labels": without_mode(labels),
                    "runs": [run for r in rows if keys[id(r)] == key for run in r["runs"]],
                    "measured_modes": [m.name for m in measured],
                    "measured": [_measured(r, m) for r, m in zip(group, measured)], "unfixed_terms": model.unfixed(),
                    "power_unfixed_terms": None if model.power is None else model.power.unfixed(),
                    "cross_validation": cv, "predicted": predictions})
    return out


def _measured(row: dict, measured: Measured) -> dict:
    """A measured mode as its comparison row has it: its runs' mean epoch time, and energy where measured (never
    replayed)."""
    energy = None if row.get("power_replayed") else (row.get("energy_joules") or {}).get("mean")
    return {"mode": measured.name, "mode_labels": measured.mode.labels(), "runs": row["runs"],
            "e2e_seconds": row["e2e_seconds"]["mean"], "energy_joules": energy}


def _bar(value: Optional[float], error_ratio: Optional[float]) -> Optional[float]:
    return None if value is None or error_ratio is None else error_ratio * value


def candidates_of_conf(path: str) -> List[Tuple[str, Mode]]:
    """A board's nvpmodel.conf modes to predict (edgescope-report --nvpmodel-conf); ValueError with one line naming
    the problem and the fix."""
    try:
        with open(path) as f:
            models = parse_nvpmodel_conf(f.read())
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError("cannot read --nvpmodel-conf {}: {}; copy the board's /etc/nvpmodel.conf".format(
            path, getattr(error, "strerror", None) or error))
    except ValueError as error:
        raise ValueError("--nvpmodel-conf {}: {}; pass the board's own /etc/nvpmodel.conf".format(path, error))
    if not models:
        raise ValueError("--nvpmodel-conf {}: no POWER_MODEL in it; pass the board's own /etc/nvpmodel.conf".format(
            path))
    return [(m.name, m.mode) for m in models]


def candidates_of_labels(modes: Sequence[Tuple[str, Dict[str, str]]]) -> Tuple[List[Tuple[str, Mode]], List[str]]:
    """--nvpmodel-conf's modes as the report's settings carry them (name, run_info labels): those a what-if can
    predict, and one note per mode it cannot (its cores online unknown)."""
    decoded = [(name, Mode.of_labels(labels)) for name, labels in modes]
    return ([(name, mode) for name, mode in decoded if mode is not None],
            ["power-mode what-if: mode {} not predicted: its cores online are unknown (no CPU_ONLINE lines in "
             "--nvpmodel-conf)".format(name) for name, mode in decoded if mode is None])


def add_mode_points(front_list: List[dict], power_modes: Sequence[dict]) -> List[str]:
    """Each predicted mode with a time and an energy joins its front's ``predicted`` points (drawn hollow, never
    recommended), its bar the cross-validation's; a note "measure mode M next" where one would win: be
    recommended under the front's budget, or (no budget) be faster or take less energy than every measured
    point. The notes."""
    notes = []
    for workload in power_modes:
        for front in front_list:
            if front["device"] != workload["device"] or front["workload"] != workload["workload"]:
                continue
            for p in workload["predicted"]:
                if p["e2e_seconds"] is None or p["energy_joules"] is None:
                    continue
                point = {"predicted": True, "what_if": "power_mode={}".format(p["mode"]), "runs": workload["runs"],
                         "configuration": dict(workload["configuration"], **p["mode_labels"]),
                         "e2e_seconds": p["e2e_seconds"], "e2e_spread_seconds": p["e2e_spread_seconds"],
                         "energy_joules": p["energy_joules"], "energy_spread_joules": p["energy_spread_joules"],
                         "basis": "fitted to the measured modes {}".format("; ".join(workload["measured_modes"])),
                         "model_error_ratio": workload["cross_validation"]["time_error_ratio"]}
                front.setdefault("predicted", []).append(point)
                win = _would_win(point, p, front)
                if win:
                    notes.append("Pareto: {} {}: measure mode {} next: predicted {:.3g} s and {:.3g} J an epoch{}, "
                                 "better than every measured mode{}{}{}{}".format(
                                     front["device"], front["workload_text"], p["mode"], p["e2e_seconds"],
                                     p["energy_joules"], "" if point["model_error_ratio"] is None else
                                     " (± {:.0%} by leave-one-mode-out)".format(point["model_error_ratio"]),
                                     " within the budget" if _budgeted(front) else "",
                                     "" if p["mode"] == mode_name(p["mode_labels"]) else  # an nvpmodel name
                                     " (an edgescope-experiment plan with sweep.power_mode: [{}])".format(p["mode"]),
                                     "; extrapolated: " + ", ".join(p["extrapolated"]) if p["extrapolated"] else "",
                                     "" if win == "time" else POWER_UNVERIFIED))
    return notes


def _budgeted(front: dict) -> bool:
    return front.get("power_budget_watts") is not None or front.get("time_budget_seconds") is not None


def _would_win(point: dict, prediction: dict, front: dict) -> Optional[str]:
    """How the predicted point would win: "time" (faster than every measured point, no budget), "power" (under
    the budget, or by energy: the predicted power decides it), or None."""
    measured = [p for p in front["points"] if not p["under_measured"]]
    if not measured:
        return None
    if _budgeted(front):
        candidate = dict(point, average_power_watts=prediction["average_power_watts"], power_spread_watts=None,
                         energy_bound_joules=0.0, under_measured=False)
        best, _ = recommend(measured + [candidate], front["power_budget_watts"], front["time_budget_seconds"])
        return "power" if best is candidate else None
    if all(point["e2e_seconds"] < p["e2e_seconds"] for p in measured):
        return "time"
    return "power" if all(point["energy_joules"] < p["energy_joules"] for p in measured) else None


def notes(power_modes: Sequence[dict]) -> List[str]:
    """Per workload: the modes it was measured in and the terms they leave open."""
    out = []
    for w in power_modes:
        open_terms = w["unfixed_terms"] + ["power: " + t for t in w["power_unfixed_terms"] or []]
        out.append("power-mode what-if: {} {} ({}) measured in {} modes ({}){}".format(
            w["device"], w["workload_text"], configuration.configuration_text(w["configuration"]),
            len(w["measured_modes"]), "; ".join(w["measured_modes"]),
            "; they leave open: {}".format(", ".join(open_terms)) if open_terms else ""))
    return out
