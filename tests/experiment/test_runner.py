"""The runner end to end as a child process: the fake jtop records every
control, the fake trainer every start; resumability, interruption, dry run,
off-Jetson behaviour, dropping caches, and the report at the end."""
import json
import os
import shlex
import signal
import subprocess
import time

import pytest

from experiment import controls as board
from experiment.controls import ControlError, NoControls
from experiment.plan import RUNNER_LABELS, load
from experiment.runner import completed_runs, run_plan
from experiment.state import Journal
from tests.experiment.conftest import as_in_a_terminal
from tests.processes import free_port
from tests.report.scenario import NX_RUN


def controls_of(events):
    return [(e["control"], e.get("value")) for e in events if "control" in e and e["control"] != "open"]


def test_controls_are_set_before_each_run_and_recorded_in_its_labels(bench):
    result = bench.run(bench.plan())
    assert result.returncode == 0, result.stderr
    events = bench.events()
    starts = [i for i, e in enumerate(events) if "argv" in e]
    assert len(starts) == 2
    # run 1: mode by name, then clocks (after the mode: a mode change resets them), then the fan
    assert controls_of(events[:starts[0]]) == [("nvpmodel", "MODE_20W_6CORE"), ("jetson_clocks", True),
                                               ("fan.profile", "manual"), ("fan.speed", 100)]
    # run 2: mode by id; the mode change turned the clocks off, so they are set again
    assert controls_of(events[starts[0]:starts[1]]) == [("nvpmodel", 3), ("jetson_clocks", True),
                                                        ("fan.speed", 100)]
    first, second = events[starts[0]], events[starts[1]]
    assert first["labels"] == {
        "power_mode": "MODE_20W_6CORE", "power_mode_id": "8", "power_mode_requested": "MODE_20W_6CORE",
        "jetson_clocks": "on",
        "fan_speed": "100", "jetpack": "5.1.2", "l4t": "35.4.1", "board": "NVIDIA Jetson Xavier NX Developer Kit",
        "dataset_location": "ssd", "data_dir": str(bench.tmp / "ssd"), "plan": "t", "page_cache": "kept",
        "cpu_count": str(len(os.sched_getaffinity(0)))}
    assert set(first["labels"]) <= RUNNER_LABELS  # the plan refuses its own labels of these names
    assert second["labels"]["power_mode"] == "MODE_10W_2CORE" and second["labels"]["power_mode_requested"] == "3"
    assert second["labels"]["power_mode_id"] == "3"  # a knob of the report's configuration (the mode's name too)
    argv = first["argv"]
    flags = dict(zip(argv[::2], argv[1::2]))
    assert flags["--model"] == "vgg11" and flags["--dataset"] == "cifar10"
    assert flags["--data-dir"] == str(bench.tmp / "ssd")
    assert (flags["--batch-size"], flags["--workers"], flags["--prefetch-factor"], flags["--epochs"]) == \
        ("16", "4", "2", "3")
    assert flags["--run-id"] == "t-vgg11-b16-w4-pf2-pm-MODE_20W_6CORE-ssd-nx-test"
    assert flags["--device-name"] == "nx-test" and flags["--metrics-port"] == "19946"
    assert flags["--exporter-url"] == "http://127.0.0.1:9945/metrics"
    assert flags["--results"] == str(bench.out / (flags["--run-id"] + ".results.jsonl"))
    assert [e["event"] for e in bench.journal()] == ["started", "completed", "started", "completed"]
    assert "Jetson controls through jtop" in result.stdout


def test_off_a_jetson_controls_are_skipped_with_a_clear_message(bench):
    result = bench.run(bench.plan(), jetson=False)
    assert result.returncode == 0, result.stderr
    assert "not a Jetson" in result.stdout and "NOT set" in result.stdout
    assert controls_of(bench.events()) == []
    labels = bench.trainer_starts()[0]["labels"]
    assert labels["controls"] == "none" and "power_mode" not in labels and "jetpack" not in labels


def test_a_power_mode_the_board_lacks_fails_before_anything_runs(bench):
    result = bench.run(bench.plan(sweep__power_mode=["MODE_15W_6CORE", "MODE_99W"]))
    assert result.returncode == 1
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and "sweep.power_mode" in err[0] and "MODE_99W" in err[0]
    assert controls_of(bench.events()) == [] and bench.trainer_starts() == []


def test_a_mode_that_does_not_take_effect_stops_with_one_line(bench):
    result = bench.run(bench.plan(sweep__power_mode=["MODE_20W_6CORE"]),
                       FAKE_JTOP_STUCK_MODES="MODE_20W_6CORE")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "did not take effect" in result.stderr
    assert bench.trainer_starts() == []


def test_completed_runs_are_skipped_and_failed_ones_redone_under_a_new_id(bench):
    plan = bench.plan(trainer__exporter_url=None)
    second = "t-vgg11-b16-w4-pf2-pm-3-ssd-nx-test"
    result = bench.run(plan, FAKE_TRAINER_FAIL=second)
    assert result.returncode == 1 and second in result.stderr and "rerun" in result.stderr
    assert [(e["run_id"], e["event"]) for e in bench.journal()][-1] == (second, "failed")
    assert "failing on purpose" in (bench.out / (second + ".log")).read_text()
    result = bench.run(plan)
    assert result.returncode == 0, result.stderr
    assert "done before, skipped" in result.stdout and "redoing (failed last time)" in result.stdout
    runs = [s["argv"][s["argv"].index("--run-id") + 1] for s in bench.trainer_starts()]
    assert runs == ["t-vgg11-b16-w4-pf2-pm-MODE_20W_6CORE-ssd-nx-test", second, second + "-a2"]
    assert all("--exporter-url" not in s["argv"] for s in bench.trainer_starts())  # null: off
    assert [(e["event"], e["attempt"], e["trainer_run_id"]) for e in bench.journal() if e["run_id"] == second] == \
        [("started", 1, second), ("failed", 1, second), ("started", 2, second + "-a2"),
         ("completed", 2, second + "-a2")]
    assert completed_runs(load(plan)) == ["t-vgg11-b16-w4-pf2-pm-MODE_20W_6CORE-ssd-nx-test", second + "-a2"]
    result = bench.run(plan)  # everything done: nothing runs again
    assert len(bench.trainer_starts()) == 3 and result.stdout.count("done before, skipped") == 2


def test_an_interrupted_run_is_redone(bench):
    plan = bench.plan()
    first = "t-vgg11-b16-w4-pf2-pm-MODE_20W_6CORE-ssd-nx-test"
    mark = bench.tmp / "hanging"
    process = subprocess.Popen(bench.cli_args(plan), env=bench.env(FAKE_TRAINER_HANG=first,
                                                                   FAKE_TRAINER_HANG_MARK=str(mark)),
                               cwd=str(bench.tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, preexec_fn=as_in_a_terminal)
    try:
        deadline = time.time() + 60
        while not mark.exists() and time.time() < deadline:
            time.sleep(0.1)
        assert mark.exists()
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group gets it
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert [(e["run_id"], e["event"]) for e in bench.journal()] == [(first, "started"), (first, "interrupted")]
    result = bench.run(plan)
    assert result.returncode == 0, result.stderr
    assert "redoing (interrupted last time)" in result.stdout
    assert [e["event"] for e in bench.journal()][-4:] == ["started", "completed", "started", "completed"]
    assert not (bench.out / (first + ".results.jsonl")).exists()  # the interrupted attempt wrote none
    redone = [json.loads(line) for line in (bench.out / (first + "-a2.results.jsonl")).read_text().splitlines()]
    assert [(r["run_id"], r["epoch"]) for r in redone] == [(first + "-a2", e) for e in range(3)]


def test_dry_run_prints_the_plan_and_runs_nothing(bench):
    result = bench.run(bench.plan(report={"prometheus": "http://127.0.0.1:9"}), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "2 runs, 3 epochs each" in result.stdout
    assert "t-vgg11-b16-w4-pf2-pm-MODE_20W_6CORE-ssd-nx-test  [pending]" in result.stdout
    assert "--label power_mode_requested=3" in result.stdout and "--batch-size 16" in result.stdout
    assert "then: edgescope-report --prometheus http://127.0.0.1:9" in result.stdout
    assert controls_of(bench.events()) == [] and bench.trainer_starts() == [] and not bench.out.exists()


def test_dry_run_commands_are_quoted_to_run_as_shown(bench):
    """A line pasted into a shell runs exactly the command the runner would run (a path with a space, a quote)."""
    data_dir = str(bench.tmp / "my ssd's")
    os.mkdir(data_dir)
    plan = bench.plan(sweep__power_mode=[None], sweep__dataset_location={"ssd": data_dir},
                      report={"prometheus": "http://127.0.0.1:9"})
    result = bench.run(plan, "--dry-run", jetson=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    shown = lines[next(i for i, line in enumerate(lines) if "[pending]" in line) + 1]
    command = shlex.split(shown)
    assert command[command.index("--data-dir") + 1] == data_dir
    assert "data_dir=" + data_dir in command and "plan=t" in command
    report = next(line for line in lines if line.startswith("then: "))
    assert shlex.split(report[len("then: "):])[:3] == ["edgescope-report", "--prometheus", "http://127.0.0.1:9"]


def test_dropping_caches_needs_root_and_says_so(bench, monkeypatch, capsys):
    from experiment.cli import main
    monkeypatch.setattr(board.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("FAKE_TRAINER_LOG", str(bench.log))
    code = main([bench.plan(controls={"drop_caches": True}, sweep__power_mode=[None])])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "needs root" in err and "--no-drop-caches" in err
    assert bench.trainer_starts() == []
    code = main([bench.plan(controls={"drop_caches": True}, sweep__power_mode=[None]), "--no-drop-caches"])
    assert code == 0 and len(bench.trainer_starts()) == 1


def test_caches_are_synced_and_dropped_before_each_run(bench, monkeypatch):
    drop_file = bench.tmp / "drop_caches"
    monkeypatch.setenv("FAKE_TRAINER_LOG", str(bench.log))
    plan = load(bench.plan(sweep__power_mode=[None], sweep__batch_size=[8, 16]))
    writes = []
    real_drop = board.drop_caches

    def drop(path):
        real_drop(path)
        writes.append((drop_file.read_text(), len(bench.trainer_starts())))

    monkeypatch.setattr(board, "drop_caches", drop)
    os.makedirs(plan.output_dir)
    assert run_plan(plan, NoControls("test"), drop=True, drop_path=str(drop_file)) == []
    assert writes == [("3\n", 0), ("3\n", 1)]  # before each trainer start
    assert all(s["labels"]["page_cache"] == "dropped" for s in bench.trainer_starts())
    with pytest.raises(ControlError, match="cannot drop the page cache"):
        real_drop(str(bench.tmp / "no" / "such" / "file"))


def test_the_report_is_produced_from_prometheus_at_the_end(bench, bench_prometheus):
    # A plan whose one run's completed attempt trained as the bench's NX run (tests/report/scenario.py):
    # the report asks Prometheus for the attempt's trainer run id, not the plan's.
    plan = bench.plan(name="bench", sweep__power_mode=[None], sweep__dataset_location={"ssd": str(bench.tmp / "ssd")},
                      report={"prometheus": bench_prometheus.url, "format": "json", "plots": True})
    journal = Journal(str(bench.out))
    run_id = load(plan).runs()[0].run_id
    journal.record(run_id, "started", attempt=2, trainer_run_id=NX_RUN)
    journal.record(run_id, "completed", attempt=2, trainer_run_id=NX_RUN)
    result = bench.run(plan, jetson=False)
    assert result.returncode == 0, result.stderr
    assert "done before, skipped" in result.stdout and bench.trainer_starts() == []
    report = json.loads((bench.out / "report.json").read_text())
    assert [s["run_id"] for s in report["summary"]] == [NX_RUN]
    assert report["summary"][0]["energy_joules"]["mean"] > 0
    assert (bench.out / "plots" / "time_split.png").exists()


def test_an_unreachable_prometheus_keeps_the_runs_and_says_so(bench):
    plan = bench.plan(sweep__power_mode=[None], report={"prometheus": "http://127.0.0.1:{}".format(free_port())})
    result = bench.run(plan, jetson=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "unreachable" in result.stderr
    assert [e["event"] for e in bench.journal()] == ["started", "completed"]


def test_the_runner_drives_the_real_trainer_and_its_context_reaches_run_info(bench):
    """No fake: the runner's command line must be one the real trainer accepts,
    and the run's context labels must land in its run_info and results."""
    from trainer.synthetic import write_cifar10
    write_cifar10(str(bench.tmp / "ssd"), train_images=64, test_images=16)
    textfile = bench.tmp / "run.prom"
    port = free_port()
    plan = bench.plan(trainer__command=None, trainer__epochs=2, trainer__max_batches=2,
                      trainer__metrics_port=port, sweep__workers=[0], sweep__power_mode=[None],
                      sweep__model=["mobilenet_v3_small"],
                      trainer__extra_args=["--linger", "0", "--metrics-textfile", str(textfile)])
    result = bench.run(plan, jetson=False, OMP_NUM_THREADS="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [e["event"] for e in bench.journal()] == ["started", "completed"]
    run_id = bench.journal()[0]["run_id"]
    exposition = textfile.read_text()
    info = [line for line in exposition.splitlines() if line.startswith("edgescope_train_run_info{")]
    assert len(info) == 1 and 'run_id="{}"'.format(run_id) in info[0]
    for label in ('dataset_location="ssd"', 'plan="t"', 'page_cache="kept"', 'model="mobilenet_v3_small"'):
        assert label in info[0], info[0]
    records = [json.loads(line) for line in (bench.out / (run_id + ".results.jsonl")).read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
