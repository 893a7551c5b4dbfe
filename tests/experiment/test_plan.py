"""Plan files: the shipped example, unknown keys, impossible values."""
import os
import re
import subprocess
import sys

import pytest

from experiment.plan import EXPORTER_URL, PlanError, attempt_id, load

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_reference_plan_loads_and_expands_the_sweep():
    plan = load(os.path.join(ROOT, "experiment", "plans", "reference.yaml"))
    runs = plan.runs()
    assert len(runs) == 3 * 2  # three models × two dataset locations
    assert len({r.run_id for r in runs}) == len(runs)
    assert {r.location for r in runs} == {"sd", "ssd"}
    assert all(r.batch_size == 16 and r.workers == 4 and r.prefetch_factor == 2 for r in runs)
    assert plan.epochs == 6 and plan.warmup_epochs == 1
    assert plan.exporter_url == EXPORTER_URL


def test_exporter_url_defaults_to_the_local_exporter_and_null_turns_it_off(bench):
    assert load(bench.plan()).exporter_url == "http://127.0.0.1:9945/metrics"
    assert load(bench.plan(trainer__exporter_url=None)).exporter_url is None


def test_repeats_and_power_modes_multiply_runs(bench):
    plan = load(bench.plan(repeats=2, sweep__batch_size=[8, 16], sweep__workers=[0, 2, 4]))
    runs = plan.runs()
    assert len(runs) == 2 * 2 * 3 * 2  # power modes × batch × workers × repeats
    assert runs[0].power_mode == "MODE_20W_6CORE" and runs[-1].power_mode == 3  # power mode outermost in a round
    assert runs[0].run_id == "t-vgg11-b8-w0-pf2-pm-MODE_20W_6CORE-ssd-r0-nx-test"


def test_repeats_interleave_round_robin_over_configurations(bench):
    """Each round runs every configuration once, so a configuration's repeats spread over the sweep and its
    spread holds the machine's drift; within a round, power mode outermost."""
    runs = load(bench.plan(repeats=3, sweep__batch_size=[8, 16])).runs()
    one_round = [("MODE_20W_6CORE", 8), ("MODE_20W_6CORE", 16), (3, 8), (3, 16)]
    assert [(r.power_mode, r.batch_size) for r in runs] == one_round * 3
    assert [r.repeat for r in runs] == [0] * 4 + [1] * 4 + [2] * 4
    # an id names its configuration and repeat, not its place: a journal written in another order means the same runs
    assert runs[5].run_id == "t-vgg11-b16-w4-pf2-pm-MODE_20W_6CORE-ssd-r1-nx-test"
    assert len({r.run_id for r in runs}) == len(runs)


def test_run_ids_carry_the_board_so_two_boards_never_share_one(bench, monkeypatch):
    nx, nano = (load(bench.plan(trainer__device_name=name)).runs() for name in ("nx-01", "nano 02"))
    assert [r.run_id for r in nx] == ["t-vgg11-b16-w4-pf2-pm-MODE_20W_6CORE-ssd-nx-01",
                                      "t-vgg11-b16-w4-pf2-pm-3-ssd-nx-01"]
    assert not {r.run_id for r in nx} & {r.run_id for r in nano}
    assert nano[0].run_id.startswith("t-vgg11-b16-w4-pf2-pm-MODE_20W_6CORE-ssd-nano_02-")  # sanitised + hash
    monkeypatch.setattr("socket.gethostname", lambda: "orin-lab3")
    assert load(bench.plan(trainer__device_name=None)).runs()[0].run_id.endswith("-ssd-orin-lab3")


def test_power_modes_that_differ_only_in_punctuation_get_distinct_stable_ids(bench):
    modes = ["15W 6CORE", "15W_6CORE", "15W-6CORE", "15W/6CORE", "15W  6CORE"]
    ids = [r.run_id for r in load(bench.plan(sweep__power_mode=modes)).runs()]
    assert len(set(ids)) == len(modes)
    assert ids[1] == "t-vgg11-b16-w4-pf2-pm-15W_6CORE-ssd-nx-test"  # already clean: unchanged
    assert all(re.match(r"^[A-Za-z0-9_.-]+$", run_id) for run_id in ids)
    assert ids == [r.run_id for r in load(bench.plan(sweep__power_mode=modes)).runs()]  # stable across loads


def test_a_redone_run_gets_a_new_id_per_attempt():
    assert attempt_id("t-vgg11-nx", 1) == "t-vgg11-nx"
    assert [attempt_id("t-vgg11-nx", n) for n in (2, 3)] == ["t-vgg11-nx-a2", "t-vgg11-nx-a3"]


@pytest.mark.parametrize("change, key", [
    ({"colour": "blue"}, "colour"),
    ({"sweep__batchsize": [16]}, "sweep.batchsize"),
    ({"controls__fan": True}, "controls.fan"),
    ({"trainer__lr": 0.1}, "trainer.lr"),
])
def test_unknown_key_is_named(bench, change, key):
    with pytest.raises(PlanError) as err:
        load(bench.plan(**change))
    assert "{}: unknown key".format(key) in str(err.value) and "plan.yaml" in str(err.value)


@pytest.mark.parametrize("change, key", [
    ({"sweep__batch_size": [16, 0]}, "sweep.batch_size[1]"),
    ({"sweep__workers": [-1]}, "sweep.workers[0]"),
    ({"sweep__prefetch_factor": [0]}, "sweep.prefetch_factor[0]"),
    ({"sweep__model": ["vgg12"]}, "sweep.model[0]"),
    ({"sweep__power_mode": [True]}, "sweep.power_mode[0]"),
    ({"sweep__batch_size": [16, 16]}, "sweep.batch_size"),
    ({"sweep__dataset_location": {}}, "sweep.dataset_location"),
    ({"trainer__epochs": 0}, "trainer.epochs"),
    ({"trainer__epochs": 1}, "report.warmup_epochs"),  # warm-up 1 of 1 epoch leaves nothing to average
    ({"trainer__metrics_port": 70000}, "trainer.metrics_port"),
    ({"trainer__dataset": "imagenet"}, "trainer.dataset"),
    ({"report__format": "xlsx"}, "report.format"),
    ({"report__prometheus": "localhost:9090"}, "report.prometheus"),
    ({"trainer__exporter_url": "board:9945"}, "trainer.exporter_url"),
    ({"controls__drop_caches": "yes"}, "controls.drop_caches"),
    ({"name": "my plan"}, "name"),
    ({"name": "sweep\n"}, "name"),  # '$' matches before a last newline: it split every run id over two lines
    ({"sweep__dataset_location": {"sd\n": "/data"}}, "sweep.dataset_location"),
])
def test_impossible_value_is_named(bench, change, key):
    with pytest.raises(PlanError) as err:
        load(bench.plan(**change))
    assert "plan.yaml: {}: ".format(key) in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(PlanError, match="cannot read the plan"):
        load(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("sweep: [unclosed\n")
    with pytest.raises(PlanError, match="not valid YAML at line"):
        load(str(bad))


def test_bad_plan_on_the_command_line_runs_nothing(bench):
    result = bench.run(bench.plan(sweep__batch_size=[0]))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "sweep.batch_size[0]" in result.stderr
    assert "Traceback" not in result.stderr
    assert bench.events() == [] and bench.journal() == []


def test_non_utf8_plan_and_wrong_top_level_are_one_line(tmp_path):
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(PlanError, match=r"latin1.yaml: not UTF-8 text \(byte 0xe9 at line 1\); save the plan as UTF-8"):
        load(str(latin1))
    listed = tmp_path / "list.yaml"
    listed.write_text("- vgg11\n")
    with pytest.raises(PlanError, match="list.yaml: the top level must be a mapping of plan keys to values, not a list"):
        load(str(listed))


def test_a_huge_sweep_is_refused_before_it_is_built(bench):
    result = bench.run(bench.plan(repeats=1000000000), "--dry-run")  # used to hang building 2e9 runs
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "plan.yaml: sweep: 2000000000 runs (" in result.stderr and "at most 10000" in result.stderr
    assert "repeats 1000000000" in result.stderr and result.stdout == ""
    assert len(load(bench.plan(repeats=5000)).runs()) == 10000  # the largest allowed sweep still loads


def test_argument_errors_are_one_line(bench):
    result = bench.run("--dry-run", "--bogus")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("edgescope-experiment: error: ")


@pytest.mark.parametrize("extra, index, needle", [
    (["--label", "__name__=x"], 0, "starts with __, which Prometheus reserves"),
    (["--evict-dataset", "--label=duration_s=9"], 1, "duration_s is a field of every --results record"),
    (["--lab", "model=resnet"], 0, "model is set by edgescope itself"),
    (["--label", "power-mode=MAXN"], 0, "'power-mode' is not a Prometheus label name"),
    (["--label", "site"], 0, "no ="),
    (["--label", "page_cache=warm"], 0, "the runner sets page_cache for every run"),
    (["--label", "site=a", "--la=site=b"], 2, "site is given more than once"),
])
def test_a_label_in_extra_args_is_checked_at_load_as_the_trainer_checks_it(bench, extra, index, needle):
    """A label the trainer refuses failed only once the first run started (the board already set up)."""
    with pytest.raises(PlanError) as err:
        load(bench.plan(trainer__extra_args=extra))
    assert "plan.yaml: trainer.extra_args[{}]: --label ".format(index) in str(err.value) and needle in str(err.value)
    assert load(bench.plan(trainer__extra_args=["--label", "site=lab3", "--label=rack=2"])).extra_args[1] == "site=lab3"


def test_the_plan_and_its_label_check_import_no_torch():
    """The runner runs on a JetPack board that may have no torch in its Python: the plan's checks need none."""
    code = "import sys, experiment.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, universal_newlines=True,
                         check=True)
    assert out.stdout.strip() == "False"
