"""The runner leaves the board as it found it: power mode, jetson_clocks and fan set back after a sweep that
completes, has a failing run, stops on an error, on Ctrl-C or SIGTERM, and, after a SIGKILL or a restore that
failed (its record kept until a restore succeeds), on the next start.
The fake jtop keeps the board's settings in a file ($FAKE_JTOP_STATE), as a real board outlives the runner."""
import json
import os
import signal
import subprocess
import time

import pytest

from experiment.controls import JtopControls
from experiment.runner import BOARD_FILE
from tests.experiment.conftest import as_in_a_terminal
from tests.experiment.test_runner import controls_of

FIRST = "t-vgg11-b16-w4-pf2-pm-MODE_20W_6CORE-ssd-nx-test"
SECOND = "t-vgg11-b16-w4-pf2-pm-3-ssd-nx-test"
QUIET = {"mode": 2, "clocks": False, "profile": "quiet", "speed": 30.0}  # the fake board's own settings
PINNED = {"mode": 2, "clocks": True, "profile": "manual", "speed": 50.0}  # a board someone pinned by hand


class Board:
    """The fake board's settings file."""

    def __init__(self, bench, found):
        self.path = bench.tmp / "board.json"
        self.path.write_text(json.dumps(found))
        self.env = {"FAKE_JTOP_STATE": str(self.path)}

    def now(self):
        return json.loads(self.path.read_text())


def start(bench, plan, **env):
    """The runner as a child in its own process group, once its first run's trainer hangs."""
    mark = bench.tmp / "hanging"
    process = subprocess.Popen(bench.cli_args(plan), env=bench.env(FAKE_TRAINER_HANG=FIRST,
                                                                   FAKE_TRAINER_HANG_MARK=str(mark), **env),
                               cwd=str(bench.tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, preexec_fn=as_in_a_terminal)
    deadline = time.time() + 60
    while not mark.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert mark.exists()
    return process


def stop(process, signum, group=True):
    try:
        if group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        return process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.parametrize("found", [QUIET, PINNED])
def test_a_completed_sweep_leaves_the_board_as_found(bench, found):
    board = Board(bench, found)
    result = bench.run(bench.plan(), **board.env)
    assert result.returncode == 0, result.stderr
    assert board.now() == found
    assert not (bench.out / BOARD_FILE).exists()
    events = bench.events()
    last_start = max(i for i, e in enumerate(events) if "argv" in e)
    restored = controls_of(events[last_start:])
    if found == PINNED:  # the mode first (it turns the clocks off), then the clocks, then the fan
        assert restored == [("nvpmodel", 2), ("jetson_clocks", True), ("fan.speed", 50.0)]
        assert "board restored as found: power mode MODE_15W_6CORE (id 2), jetson_clocks on, fan manual at 50 %" \
            in result.stdout
    else:
        assert restored == [("nvpmodel", 2), ("fan.profile", "quiet")]


def test_a_failing_run_leaves_the_board_as_found(bench):
    board = Board(bench, QUIET)
    result = bench.run(bench.plan(), FAKE_TRAINER_FAIL=FIRST, **board.env)
    assert result.returncode == 1 and FIRST in result.stderr
    assert board.now() == QUIET and not (bench.out / BOARD_FILE).exists()


def test_an_error_mid_sweep_leaves_the_board_as_found(bench):
    board = Board(bench, QUIET)
    result = bench.run(bench.plan(), FAKE_JTOP_STUCK_MODES="MODE_10W_2CORE", **board.env)  # the second run's mode
    assert result.returncode == 1 and "did not take effect" in result.stderr
    assert len(bench.trainer_starts()) == 1
    assert board.now() == QUIET and not (bench.out / BOARD_FILE).exists()


def test_ctrl_c_leaves_the_board_as_found(bench):
    board = Board(bench, QUIET)
    process = start(bench, bench.plan(), **board.env)
    assert board.now()["mode"] == 8 and json.loads((bench.out / BOARD_FILE).read_text())["nvpmodel_id"] == 2
    out, err = stop(process, signal.SIGINT)
    assert process.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert board.now() == QUIET and not (bench.out / BOARD_FILE).exists()
    assert "board restored as found" in out


def test_sigterm_stops_the_trainer_and_leaves_the_board_as_found(bench):
    board = Board(bench, QUIET)
    process = start(bench, bench.plan(), **board.env)
    began = time.time()
    out, err = stop(process, signal.SIGTERM, group=False)  # to the runner alone, as systemd or kill(1) would
    assert process.returncode == 143 and "terminated (SIGTERM)" in err and "Traceback" not in err
    assert time.time() - began < 30  # the hanging trainer was terminated, not waited for
    assert [e["event"] for e in bench.journal()] == ["started", "interrupted"]
    assert board.now() == QUIET and not (bench.out / BOARD_FILE).exists()


def test_after_sigkill_the_next_start_restores_the_board_first(bench):
    board = Board(bench, QUIET)
    plan = bench.plan()
    process = start(bench, plan, **board.env)
    stop(process, signal.SIGKILL)
    assert board.now() == {"mode": 8, "clocks": True, "profile": "manual", "speed": 100.0}  # left pinned
    assert (bench.out / BOARD_FILE).exists()
    before = len(bench.events())
    result = bench.run(plan, **board.env)
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stdout.splitlines() if "killed before it restored the board" in line]
    assert len(said) == 1 and "board restored as found: power mode MODE_15W_6CORE (id 2)" in said[0]
    events = bench.events()[before:]
    first_start = next(i for i, e in enumerate(events) if "argv" in e)
    assert controls_of(events[:first_start])[:3] == [("nvpmodel", 2), ("fan.profile", "quiet"),
                                                     ("nvpmodel", "MODE_20W_6CORE")]
    assert board.now() == QUIET and not (bench.out / BOARD_FILE).exists()


def test_what_cannot_be_restored_is_one_line_naming_the_command(bench):
    board = Board(bench, QUIET)
    result = bench.run(bench.plan(), FAKE_JTOP_STUCK_MODES="MODE_15W_6CORE", **board.env)  # the found mode
    assert result.returncode == 0 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "could not restore" in line]
    assert lines == ["edgescope-experiment: could not restore the power mode MODE_15W_6CORE (it did not take "
                     "effect): run 'sudo nvpmodel -m 2' (and reboot if it asks)"]
    assert board.now() == dict(QUIET, mode=3)  # the clocks and the fan were still restored


def test_a_failed_restore_keeps_the_record_until_a_sweep_restores_from_it(bench):
    """The record goes only with a restore that succeeded: the board left in the sweep's mode is never taken
    as found, however many sweeps fail to restore it (jtop's client reads the board afresh each time)."""
    board = Board(bench, QUIET)
    plan = bench.plan()
    stuck = {"FAKE_JTOP_STUCK_MODES": "MODE_15W_6CORE"}  # the found mode does not come back (it needs a reboot)
    for _ in range(2):
        result = bench.run(plan, **dict(board.env, **stuck))
        assert result.returncode == 0 and "Traceback" not in result.stderr
        assert board.now() == dict(QUIET, mode=3)  # the second run's mode: the clocks and fan were restored
        assert json.loads((bench.out / BOARD_FILE).read_text())["nvpmodel_id"] == 2  # kept, not re-read as 3
        kept = [line for line in result.stderr.splitlines() if "stays recorded" in line]
        assert kept and all(line == "edgescope-experiment: the board as found stays recorded in {}: the next sweep "
                            "restores it from there first (delete the file once the board is set back by hand)"
                            .format(bench.out / BOARD_FILE) for line in kept)
    assert len(bench.trainer_starts()) == 2  # the second sweep found every run done
    result = bench.run(plan, **board.env)  # the mode takes effect again
    assert result.returncode == 0, result.stderr
    assert "killed before it restored the board, or whose restore failed" in result.stdout
    assert board.now() == QUIET and not (bench.out / BOARD_FILE).exists()


def test_a_sigkill_after_a_failed_restore_leaves_the_first_record(bench):
    """A sweep that starts on a kept record it cannot restore, and is then killed outright, leaves that
    record as it was: the board it changed is never written in its place."""
    board = Board(bench, dict(QUIET, mode=3))  # as a sweep whose restore of mode 2 failed left it
    bench.out.mkdir()
    record = {"fan_profile": "quiet", "fan_speed": 30.0, "jetson_clocks": False, "nvpmodel_id": 2,
              "nvpmodel_name": "MODE_15W_6CORE"}
    (bench.out / BOARD_FILE).write_text(json.dumps(record))
    process = start(bench, bench.plan(), FAKE_JTOP_STUCK_MODES="MODE_15W_6CORE", **board.env)
    stop(process, signal.SIGKILL)
    assert board.now()["mode"] == 8 and json.loads((bench.out / BOARD_FILE).read_text()) == record
    result = bench.run(bench.plan(), **board.env)
    assert result.returncode == 0, result.stderr
    assert board.now() == QUIET and not (bench.out / BOARD_FILE).exists()


class StoppedService:
    """jtop's client when jtop.service is down: it connects (and fails) in __enter__ (jtop.start())."""

    def __enter__(self):
        raise ConnectionRefusedError("/run/jtop.sock")

    def __exit__(self, *exc):
        return False


def no_client():
    raise ConnectionRefusedError("/run/jtop.sock")


@pytest.mark.parametrize("jtop_class", [StoppedService, no_client])
def test_a_lost_jtop_service_names_each_manual_command(jtop_class):
    found = {"nvpmodel_id": 2, "nvpmodel_name": "MODE_15W_6CORE", "jetson_clocks": False,
             "fan_profile": "manual", "fan_speed": 40.0}
    lines = JtopControls(jtop_class).restore(found)
    assert len(lines) == 3
    assert "could not restore the power mode MODE_15W_6CORE" in lines[0] and "'sudo nvpmodel -m 2'" in lines[0]
    assert "jetson_clocks off" in lines[1] and "'sudo jetson_clocks --restore'" in lines[1]
    assert "fan" in lines[2] and "manual at 40 %" in lines[2]
    assert all("/run/jtop.sock" in line and "\n" not in line for line in lines)


@pytest.mark.parametrize("store, why", [
    (lambda path: path.write_text("{not json"), "Expecting property name"),
    (lambda path: path.write_text("[2, false]"), "not a JSON object"),
    (lambda path: os.mkfifo(str(path)), "not a regular file"),  # blocked the sweep's start for ever
    (lambda path: os.symlink("/dev/zero", str(path)), "not a regular file"),  # read until memory ran out
], ids=["syntax", "list", "fifo", "zero"])
def test_an_unreadable_stored_state_is_said_in_one_line_and_the_sweep_goes_on(bench, store, why):
    board = Board(bench, QUIET)
    bench.out.mkdir()
    store(bench.out / BOARD_FILE)
    result = bench.run(bench.plan(), **board.env)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "cannot read the board's settings" in line]
    assert len(lines) == 1 and "'sudo nvpmodel -q'" in lines[0] and "Traceback" not in result.stderr
    assert why in lines[0], lines[0]
    assert board.now() == QUIET and not (bench.out / BOARD_FILE).exists()


def test_a_jtop_service_down_before_the_sweep_is_one_line_and_nothing_runs(bench, monkeypatch, capsys):
    from experiment import controls
    from experiment.cli import main
    monkeypatch.setattr(controls, "find_controls", lambda: JtopControls(StoppedService))
    code = main([bench.plan(sweep__power_mode=[None])])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "cannot talk to the jtop service" in err
    assert bench.trainer_starts() == [] and not (bench.out / BOARD_FILE).exists()
