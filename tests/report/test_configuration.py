"""One definition of a configuration (report/configuration.py) behind the comparison rows, the Pareto front
and the what-ifs' search for a measured run: knobs split rows, how a run was measured splits rows but is never
a configuration to choose, and context (a plan's name, a data directory, the CPU count) splits nothing."""
from report import configuration
from report.configuration import configuration_text
from report.pareto import fronts
from report.summary import comparison, run_summary
from report.whatif import add_what_ifs
from tests.report.synthetic import report, run

RUNNER = {"plan": "sweep-a", "data_dir": "/mnt/sd/cifar", "cpu_count": "4", "power_mode": "15W",
          "jetson_clocks": "on", "timing": "lazy", "page_cache": "dropped", "dataset_location": "sd"}


def test_repeats_of_one_configuration_pool_though_their_context_differs():
    first = run(0, info=RUNNER, run_id="a")
    second = run(0, info=dict(RUNNER, plan="sweep-b", data_dir="/media/sd/cifar", cpu_count="2"), run_id="b")
    rows = comparison([first, second], warmup_epochs=1)
    assert [r["runs"] for r in rows] == [["a", "b"]] and rows[0]["epochs"] == 6
    assert rows[0]["context_differs"] == ["cpu_count", "data_dir", "plan"]
    assert rows[0]["measured_as"] == {"page_cache": "dropped", "timing": "lazy"}
    assert rows[0]["configuration"] == {"batch_size": "16", "dataset": "cifar10", "dataset_location": "sd",
                                        "epoch_samples": "50000", "jetson_clocks": "on", "pin_memory": "false",
                                        "power_mode": "15W", "prefetch_factor": "2", "workers": "1"}
    notes = report([first, second])["notes"]
    assert notes == ["Comparison: runs a, b of nano-1 vgg11 (batch_size=16 dataset=cifar10 dataset_location=sd "
                     "epoch_samples=50000 jetson_clocks=on pin_memory=false power_mode=15W prefetch_factor=2 "
                     "workers=1) pool into one row: same configuration, though their cpu_count, data_dir, plan "
                     "differ"]


def test_each_knob_splits_rows():
    base = run(0, info=RUNNER, run_id="base")
    for name, _ in configuration.KNOBS:
        if name in configuration.COLUMNS or name in configuration.FROM_EPOCHS:
            continue  # device, storage and model are the run's own fields, set by synthetic.run's board
        other = run(0, info=dict(RUNNER, **{name: "changed"}), run_id="other")
        assert len(comparison([base, other], warmup_epochs=1)) == 2, name
    window = run(0, info=RUNNER, run_id="window")  # a framework's window: the same labels, fewer samples
    for epoch in window.epochs:
        epoch.samples = 640.0
    assert sorted(r["runs"][0] for r in comparison([base, window], warmup_epochs=1)) == ["base", "window"]


def test_a_measurement_pass_is_its_own_row_and_never_a_point_to_choose():
    normal = run(0, info=RUNNER, run_id="normal")
    cold = run(0, info=dict(RUNNER, page_cache="evicted", profile_pass="cold"), run_id="cold")
    rows = comparison([normal, cold], warmup_epochs=1)
    assert sorted(r["runs"][0] for r in rows) == ["cold", "normal"]
    assert rows[0]["configuration"] == rows[1]["configuration"]  # the same knobs: the pass is no knob
    front, notes = fronts(rows)
    assert [p["runs"] for p in front[0]["points"]] == [["normal"]]
    assert notes == ["Pareto: nano-1 vgg11 {} left out: a profile pass (profile_pass=cold), not a way to train; "
                     "it feeds the what-ifs".format(configuration_text(rows[0]["configuration"]))]


def test_the_what_if_finds_the_measured_run_across_plans():
    """A doubled-workers prediction is checked against a run of 2x the workers from another plan (context)."""
    one = run(0, info=RUNNER, run_id="w1")
    two = run(0, info=dict(RUNNER, workers="2", plan="sweep-b", cpu_count="2"), run_id="w2")
    records = [run_summary(r, 1) for r in (one, two)]
    for record in records:
        record["predicted"] = [{"workers_doubled": 30.0}, {"workers_doubled": 31.0}]
    add_what_ifs(records, None)
    assert records[0]["what_if"]["workers_doubled"]["measured"]["runs"] == ["w2"]
    # ... but not against a run of another power mode (a knob)
    records[1]["configuration"]["power_mode"] = "MAXN"
    add_what_ifs(records, None)
    assert "measured" not in records[0]["what_if"]["workers_doubled"]


def test_the_knobs_are_what_a_user_sets_never_a_measurement_state():
    assert {"device", "torch_device", "model", "batch_size", "workers", "prefetch_factor", "power_mode",
            "jetson_clocks", "storage", "precision", "gradient_accumulation_steps"} <= set(configuration.KNOB_NAMES)
    assert not {"page_cache", "profile_pass", "input", "run_id", "plan"} & set(configuration.KNOB_NAMES)


def test_a_run_from_before_the_runner_recorded_the_nvpmodel_id_pools_with_one_after():
    older = run(0, info=RUNNER, run_id="older")
    newer = run(0, info=dict(RUNNER, power_mode_id="2"), run_id="newer")
    (row,) = comparison([older, newer], warmup_epochs=1)
    assert row["runs"] == ["older", "newer"] and row["context_differs"] == ["power_mode_id"]


def test_labels_fall_in_exactly_one_part():
    labels = dict(RUNNER, run_id="r", device="nano-1", device_type="nano", storage="sd", model="vgg11",
                  workers="4", profile_pass="cold", jetpack="5.1.2")
    parts = [configuration.knobs(labels), configuration.measured_as(labels), configuration.context(labels)]
    named = [k for part in parts for k in part]
    assert sorted(named) == sorted(k for k in labels if k not in configuration.IDENTITY)
    assert len(named) == len(set(named))
    assert configuration.of_record(dict(run_summary(run(0, info=labels), 1))) == dict(
        configuration.knobs(dict(labels, dataset="cifar10", prefetch_factor="2", pin_memory="false",
                                 batch_size="16", epoch_samples="50000")), **configuration.measured_as(labels))
