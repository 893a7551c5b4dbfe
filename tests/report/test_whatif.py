"""A prediction checked against a measured run of the change (report/whatif.py): the error's bar holds both
spreads and how far the measured run's compute moved from the compute the prediction assumed."""
import pytest

from report.render import diagnosis_table
from report.summary import run_summary
from report.whatif import add_what_ifs, compared
from tests.report.synthetic import run


def test_the_bar_holds_the_spreads_and_the_compute_drift_is_shown_beside_it():
    plain = compared(10.0, 0.3, 11.0, 0.4)
    assert plain["e2e_error_ratio"] == pytest.approx(-1 / 11)
    assert plain["e2e_error_spread_ratio"] == pytest.approx(10 / 11 * ((0.3 / 10) ** 2 + (0.4 / 11) ** 2) ** 0.5)
    assert not plain["within_noise"] and plain["compute_drift_seconds"] is None and plain["compute_covers"] is None
    drifted = compared(10.0, 0.3, 11.0, 0.4, compute_drift=0.8)  # the measured run's steps took 0.8 s longer
    assert drifted["e2e_error_spread_ratio"] == plain["e2e_error_spread_ratio"]  # the machine or the model: not noise
    assert not drifted["within_noise"] and drifted["compute_covers"]
    assert compared(10.0, 0.3, 11.0, 0.4, compute_drift=-0.8)["compute_covers"]  # either way
    assert not compared(10.0, 0.3, 11.0, 0.4, compute_drift=0.2)["compute_covers"]  # 0.2 + 0.7 < 1 s


def test_the_drift_is_the_measured_runs_compute_less_the_predicted():
    one, two = run(0, run_id="w1", info={"workers": "1"}), run(0, run_id="w2", info={"workers": "2"})
    records = [run_summary(r, 1) for r in (one, two)]
    records[0]["predicted"] = [{"workers_doubled": 33.0}, {"workers_doubled": 33.4}]
    records[0]["predicted_compute"] = [{"workers_doubled": 20.0}, {"workers_doubled": 20.2}]
    add_what_ifs(records, None)
    prediction = records[0]["what_if"]["workers_doubled"]
    measured = prediction["measured"]
    assert prediction["compute_seconds"] == pytest.approx(20.1)
    assert measured["run_id"] == "w2"
    assert measured["compute_drift_seconds"] == pytest.approx(records[1]["compute_seconds"]["mean"] - 20.1)
    _, headers, rows = diagnosis_table({"summary": records})
    cell = rows[0][headers.index("workers_doubled")]
    assert "; its compute {:+.2g} s from the predicted".format(measured["compute_drift_seconds"]) in cell
    assert measured["compute_covers"] == (abs(33.2 - measured["e2e_seconds"]) <= 0.2828 + (
        measured["e2e_spread_seconds"] or 0) + abs(measured["compute_drift_seconds"]))
    # a trainer that published no predicted compute: the bar is the spreads' alone
    records[0]["predicted_compute"] = [{}, {}]
    add_what_ifs(records, None)
    assert records[0]["what_if"]["workers_doubled"]["measured"]["compute_drift_seconds"] is None
