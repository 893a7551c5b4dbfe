"""The Pareto front and the budgets (report/pareto.py) on hand-made comparison rows: budgets find every fit,
dominance only beyond the spreads, measurement passes and replayed power never advise, CPU and CUDA apart."""
from typing import Optional

import pytest

from report.configuration import MEASUREMENT
from report.pareto import fronts
from report.summary import comparison
from tests.report.synthetic import run
from trainer.calibration import student_t


def row(name: str, e2e: float, energy: float, power: float, spread: float = 0.0,
        power_spread: Optional[float] = 0.0, epochs: int = 3, **labels: str) -> dict:
    """A comparison row of ``epochs`` kept epochs: its spreads become bars × Student t (1.32 for 3 epochs)."""
    return {"device": "nano-1", "model": "vgg11", "storage": "sd", "runs": [name], "epochs": epochs,
            "configuration": dict({"workers": "4"}, **{k: v for k, v in labels.items() if k not in MEASUREMENT}),
            "measured_as": {k: v for k, v in labels.items() if k in MEASUREMENT},
            "e2e_seconds": {"mean": e2e, "std": spread}, "energy_joules": {"mean": energy, "std": spread},
            "average_power_watts": {"mean": power, "std": power_spread}}


def test_the_power_budget_finds_a_dominated_configuration_that_fits():
    """A = 10 s / 100 J / 10 W dominates B = 20 s / 150 J / 7.5 W, but only B fits 8 W."""
    front, notes = fronts([row("A", 10, 100, 10), row("B", 20, 150, 7.5, workers="2")], power_budget=8)
    assert front[0]["recommendation"]["runs"] == ["B"] and notes == []
    assert front[0]["binding"] == "the power budget binds: runs A draws up to 10.00 W, 2.00 W over the 8 W budget"


def test_a_budget_is_met_by_the_upper_end_of_the_spread():
    rows = [row("A", 10, 100, 7.9, power_spread=0.3), row("B", 20, 150, 7.5, workers="2", power_spread=0.2)]
    assert fronts(rows, power_budget=8)[0][0]["recommendation"]["runs"] == ["B"]  # A may draw 8.2 W
    rows = [row("A", 10, 100, 7.0, spread=1.0), row("B", 14, 90, 6.0, workers="2", spread=1.0)]
    best = fronts(rows, time_budget=14.5)[0][0]["recommendation"]  # B may take 15 s
    assert best["runs"] == ["A"]
    front, notes = fronts(rows, time_budget=5)
    assert front[0]["recommendation"] is None
    assert notes == ["Pareto: no configuration of nano-1 vgg11 fits the budget (nothing fits: runs B takes up to "
                     "15.32 s, 10.32 s over the 5 s budget)"]


def test_a_budget_is_checked_on_the_bar_the_report_prints():
    """A (2 kept epochs, 10.0 ± 0.3 s, 90 J) and B (20 epochs, 10.2 ± 0.3 s, 100 J) under a 10.52 s budget: on the
    raw spreads A fits (10.3 s) and, using less energy, was the pick; the bars printed beside them are the spreads
    × Student t, 1.84 for 2 epochs and 1.03 for 20: A may take 10.55 s, B 10.51 s, so only B fits."""
    from report.render import pareto_table
    from trainer.precision import with_spread
    rows = [row("A", 10.0, 90, 6, spread=0.3, epochs=2), row("B", 10.2, 100, 6, spread=0.3, epochs=20, workers="2")]
    front, _ = fronts(rows, time_budget=10.52)
    assert front[0]["recommendation"]["runs"] == ["B"]
    _, headers, table = pareto_table({"pareto": front, "settings": {"time_budget": 10.52}})
    printed = {line[headers.index("configuration")]: line[headers.index("E2E")] for line in table}
    points = {p["runs"][0]: p for p in front[0]["points"]}
    assert points["A"]["e2e_spread_seconds"] == pytest.approx(0.3 * student_t(2))
    assert printed["workers=4"] == with_spread(10.0, points["A"]["e2e_spread_seconds"], "s")  # the bar checked
    assert fronts(rows, time_budget=10.56)[0][0]["recommendation"]["runs"] == ["A"]  # its bar's top fits


def test_points_inside_each_others_spread_tie_instead_of_dominating():
    rows = [row("A", 10.0, 100.0, 10, spread=0.6), row("B", 10.5, 100.5, 9.6, spread=0.6, workers="2"),
            row("C", 20.0, 200.0, 10, spread=0.6, workers="1")]
    points = {p["runs"][0]: p for p in fronts(rows)[0][0]["points"]}
    assert not points["B"]["dominated"] and points["B"]["ties"] == ["runs A"]
    assert points["C"]["dominated"]  # far beyond both spreads
    assert not points["A"]["dominated"] and points["A"]["ties"] == []


def test_measurement_passes_and_replayed_power_are_not_configurations_to_choose():
    rows = [row("run", 12, 120, 10),
            row("run-cold", 20, 200, 10, page_cache="evicted", profile_pass="cold"),
            row("run-cached", 9, 90, 10, page_cache="warmed", profile_pass="cached"),
            row("run-synthetic", 5, 50, 10, input="synthetic", profile_pass="synthetic"),
            dict(row("demo", 4, 10, 2.5, workers="8"), power_replayed=True)]
    front, notes = fronts(rows, power_budget=100)
    assert [p["runs"] for p in front[0]["points"]] == [["run"]]
    assert front[0]["recommendation"]["runs"] == ["run"]  # never page_cache=warmed, never the demo
    assert len(notes) == 4
    assert any("profile pass (profile_pass=cold)" in n for n in notes)
    assert any("replayed from a recorded log" in n and "8" in n for n in notes)
    replayed = dict(rows[-1], epochs=3, energy_joules={"mean": 10, "std": None},
                    average_power_watts={"mean": 2.5, "std": None})  # as report.summary gives a replay's
    (demo,) = fronts([rows[0], replayed])[0][0]["replayed"]
    assert demo["energy_spread_joules"] is None and demo["power_spread_watts"] is None  # the JSON said 0.0


def test_cpu_and_cuda_runs_of_the_same_settings_are_two_rows():
    cpu, cuda = run(0, info={"torch_device": "cpu"}, run_id="on-cpu"), run(0, info={"torch_device": "cuda"},
                                                                              run_id="on-cuda")
    rows = comparison([cpu, cuda], warmup_epochs=1)
    assert sorted((r["torch_device"], tuple(r["runs"])) for r in rows) == [("cpu", ("on-cpu",)),
                                                                           ("cuda", ("on-cuda",))]


def test_what_ifs_are_predicted_points_beside_the_front_never_recommended():
    from report.pareto import add_predicted_points
    rows = [row("A", 10, 100, 10), row("B", 20, 150, 7.5, workers="2")]
    with_what_ifs = [dict(row("B", 20, 150, 7.5, workers="2"), runs=["b-run", "b-again"], what_if={
        "workers_doubled": {"e2e_seconds": 12.0, "e2e_spread_seconds": 0.5, "energy_joules": 95.0,
                            "energy_spread_joules": 4.0, "basis": "replayed", "model_error_ratio": 0.02},
        "compute_speedup=2": {"e2e_seconds": 11.0, "e2e_spread_seconds": 0.4, "energy_joules": 80.0,
                              "energy_spread_joules": 3.0, "basis": "replayed", "model_error_ratio": None},
        "dataset_cached": {"e2e_seconds": None, "e2e_spread_seconds": None, "energy_joules": None,
                           "energy_spread_joules": None, "basis": "does not fit"}})]
    front, _ = fronts(rows, power_budget=100)
    add_predicted_points(front, with_what_ifs)
    predicted = front[0]["predicted"]
    assert [(p["what_if"], p["runs"], p["predicted"]) for p in predicted] == [
        ("workers_doubled", ["b-run", "b-again"], True)]
    assert predicted[0]["e2e_spread_seconds"] == 0.5  # with its error bar
    assert front[0]["recommendation"]["runs"] == ["A"]  # a prediction never advises, however good it looks


def test_one_kept_epoch_is_under_measured_fits_no_budget_and_is_marked():
    """A (one epoch, so a zero spread) and B (four epochs, 10 ± 0.5 s) are as fast: B may take 10.5 s and misses a
    10.2 s budget; A's zero spread is no measured spread, so A misses it too, and it ties rather than
    dominates."""
    from report.render import pareto_table
    rows = [dict(row("A", 10.0, 100, 6), epochs=1), dict(row("B", 10.0, 100, 6, spread=0.5, workers="2"), epochs=4),
            dict(row("C", 30.0, 300, 6, spread=0.5, workers="1"), epochs=4)]
    front, notes = fronts(rows, time_budget=10.2)
    points = {p["runs"][0]: p for p in front[0]["points"]}
    assert points["A"]["under_measured"] and not points["B"]["under_measured"]
    assert front[0]["recommendation"] is None
    assert front[0]["binding"] == "nothing fits: runs A is under-measured: one kept epoch, no spread to fit a " \
                                  "budget on"
    assert points["C"]["dominated"]  # by B
    lone = {p["runs"][0]: p for p in fronts([rows[0], rows[2]])[0][0]["points"]}
    assert not lone["C"]["dominated"] and lone["C"]["ties"] == ["runs A"]  # A's one epoch proves nothing
    assert fronts(rows, power_budget=100)[0][0]["recommendation"]["runs"] == ["B"]
    front, _ = fronts(rows, power_budget=100)
    _, headers, table = pareto_table({"pareto": front, "settings": {"power_budget": 100}})
    marks = {line[headers.index("configuration")]: line[headers.index("pareto")] for line in table}
    assert marks["workers=4"] == "front (under-measured: one kept epoch, no spread to fit a budget on)"


def test_the_energy_bound_widens_energy_so_a_dominance_within_it_is_a_tie():
    """A = 10 s / 100 J beats B = 10 s / 104 J beyond their 1 J spreads (101 < 103); with the energy counter's
    ± 2 J bound on each, the two reach 103 and 101 J: they tie."""
    rows = [row("A", 10.0, 100.0, 10, spread=1.0), row("B", 10.0, 104.0, 10, spread=1.0, workers="2")]
    points = {p["runs"][0]: p for p in fronts(rows)[0][0]["points"]}
    assert points["B"]["dominated"] and points["B"]["ties"] == []
    bounded = [dict(r, energy_bound_joules={"mean": 2.0, "std": 0.1}) for r in rows]
    points = {p["runs"][0]: p for p in fronts(bounded)[0][0]["points"]}
    assert points["A"]["energy_bound_joules"] == 2.0
    assert not points["B"]["dominated"] and points["B"]["ties"] == ["runs A"]


def test_the_comparison_table_marks_a_configuration_with_one_kept_epoch():
    from report.render import tables
    from tests.report.synthetic import report
    _, headers, rows = tables(report([run(0, epochs=2), run(2)]))[2]  # the first keeps epoch 1 alone
    assert [r[headers.index("epochs")] for r in rows] == ["1 (under-measured)", "3"]
