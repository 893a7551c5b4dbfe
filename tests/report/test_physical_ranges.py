"""Numbers no board can produce never reach a mean: each per-epoch figure outside its physical range
(exporter/ranges.py, the table the exporter's exposition boundary uses too) is shown as missing with a note,
never clipped; an epoch that ends before it starts is skipped with a note instead of stopping the report."""
import math

from hypothesis import given, settings, strategies as st

from exporter.ranges import BOARD_WATTS, CELSIUS, RATIO, outside
from exporter.metrics import value_problem
from report.collect import (ENERGY, EPOCH_GAUGES, EPOCH_RANGES, RUN_INFO, Epoch, Run, collect,
                            drop_unphysical)
from report.render import build
from tests.report import synthetic

VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([-1.0, 0.0, 0.5, 1.0, 5.0, 1e308]))


@settings(max_examples=200, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(sorted(EPOCH_RANGES) + ["average_power_watts"]), VALUES),
       device_type=st.sampled_from(sorted(BOARD_WATTS) + ["unknown"]))
def test_out_of_range_figures_become_missing_with_one_note_each(fields, device_type):
    run = Run(run_id="r", device="d", instance="d:9946", device_type=device_type, storage="sd", info={})
    run.epochs.append(Epoch(run_id="r", device="d", epoch=0, **fields))
    notes = []
    drop_unphysical(run, notes)
    for name, value in fields.items():
        kept = getattr(run.epochs[0], name)
        limit = BOARD_WATTS.get(device_type, 1000.0) if name == "average_power_watts" else \
            EPOCH_RANGES[name].high
        physical = math.isfinite(value) and 0.0 <= value <= limit
        e2e = run.epochs[0].e2e_seconds
        part = name in ("fetch_stall_seconds", "compute_seconds") and e2e is not None
        if physical and part and value > e2e:
            assert kept is None and any(": {} above e2e_seconds".format(name) in n for n in notes), notes
        elif physical and not (name == "energy_joules" and "average_power_watts" in fields and
                               run.epochs[0].average_power_watts is None):
            assert kept == value, name
        if not physical:
            assert kept is None and any(": {} ".format(name) in n and "shown as missing" in n for n in notes), notes
    assert len(notes) == len({n.split(": ")[1].split(" ")[0] for n in notes})  # one note per figure


@settings(max_examples=100, deadline=None)
@given(st.floats(allow_nan=True))
def test_one_table_for_exporter_and_report(value):
    """The exposition boundary and the report read the same ranges: a temperature, a ratio."""
    assert (value_problem("edgescope_temperature_celsius", value) is None) == (outside(value, CELSIUS) is None)
    assert (value_problem("edgescope_gpu_utilisation_ratio", value) is None) == (outside(value, RATIO) is None)
    assert (value_problem("edgescope_temperature_celsius", value) is None) == (-40 <= value <= 150)


class FakePrometheus:
    """Prometheus' answers for one run on one Nano: trainer gauges per epoch and an energy counter."""
    url = "http://fake:9090"

    def __init__(self, epochs, energy):
        self.epochs, self.energy = epochs, energy
        self.labels = {"run_id": "r1", "device": "nano-1", "instance": "nano-1:9946", "device_type": "nano"}

    def vector(self, query, at):
        if RUN_INFO + "{" in query and query.startswith("last_over_time"):
            return [(dict(self.labels, model="vgg11"), 1.0)]
        return [(dict(self.labels, epoch=str(k)), values[name]) for name, metric in EPOCH_GAUGES.items()
                if metric + "{" in query for k, values in enumerate(self.epochs) if name in values]

    def raw(self, selector, start, end):
        if selector.startswith(ENERGY + "{"):
            return [({"device": "nano-1", "instance": "nano-1:9945"}, [s for s in self.energy if start <= s[0] <= end])]
        return []

    def range(self, query, start, end, step):
        return []


def test_a_backwards_epoch_a_negative_one_and_impossible_power_are_notes_not_numbers():
    t = 1795000000.0
    epochs = [{"start": t, "end": t + 10, "e2e_seconds": 10.0, "fetch_stall_seconds": 1.0, "compute_seconds": 8.0},
              {"start": t + 10, "end": t + 20, "e2e_seconds": -10.0, "fetch_stall_seconds": -3.0,
               "compute_seconds": 8.0},
              {"start": t + 30, "end": t + 25, "e2e_seconds": 10.0, "fetch_stall_seconds": 1.0,
               "compute_seconds": 8.0}]
    energy = [(t - 5, 0.0), (t + 5, 5000.0), (t + 40, 5175.0)]  # 252 W in epoch 0: no Nano draws it; 5 W in 1
    collected = collect(FakePrometheus(epochs, energy), ["r1"], t - 3600, t + 3600)
    run, = collected.runs
    assert [e.epoch for e in run.epochs] == [0, 1]
    notes = "\n".join(collected.notes)
    assert "epoch(s) 2 skipped: each ends before it starts" in notes
    assert run.epochs[1].e2e_seconds is None and run.epochs[1].fetch_stall_seconds is None
    assert "e2e_seconds outside 0..1e+18 in epoch(s) 1 (such as -10)" in notes, notes
    assert run.epochs[0].energy_joules is None and run.epochs[0].average_power_watts is None
    assert run.epochs[1].average_power_watts == 5.0  # in range: kept
    assert "average_power_watts outside 0..25 in epoch(s) 0 (such as 252.5)" in notes, notes
    report = build(collected, 0, {"prometheus": FakePrometheus.url, "since": t - 3600, "until": t + 3600})
    row, = report["comparison"]
    assert row["e2e_seconds"]["mean"] is None and row["energy_joules"]["mean"] is None  # never averaged in


def test_a_report_of_physical_numbers_keeps_them_all():
    runs = [synthetic.run(k) for k in range(3)]
    before = [[vars(e).copy() for e in r.epochs] for r in runs]
    notes = []
    for r in runs:
        drop_unphysical(r, notes)
    assert not notes and before == [[vars(e) for e in r.epochs] for r in runs]


@settings(max_examples=100, deadline=None)
@given(predicted=st.dictionaries(st.sampled_from(["workers_doubled", "dataset_cached", "storage_bps=2e+07"]), VALUES),
       compute=st.dictionaries(st.sampled_from(["compute_speedup=2", "workers_doubled"]), VALUES))
def test_what_if_predictions_outside_an_epochs_range_are_never_printed(predicted, compute):
    """A hostile or broken trainer's what-if gauges of 1e300 s or -5 s are no predictions: dropped, one note each."""
    run = Run(run_id="r", device="d", instance="d:9946", device_type="nano", storage="sd", info={})
    run.epochs.append(Epoch(run_id="r", device="d", epoch=0, predicted=dict(predicted),
                            predicted_compute=dict(compute)))
    notes = []
    drop_unphysical(run, notes)
    for name, given_values in (("predicted", predicted), ("predicted_compute", compute)):
        kept = getattr(run.epochs[0], name)
        for what_if, value in given_values.items():
            physical = math.isfinite(value) and 0.0 <= value <= EPOCH_RANGES["e2e_seconds"].high
            assert (kept.get(what_if) == value) if physical else what_if not in kept
            assert physical or any("{}{{what_if={}}} ".format(name, what_if) in n and "shown as missing" in n
                                   for n in notes), notes
