"""The runner's files (journal, run logs, the report) on a real full disk (a filled tmpfs, root only): their
previous content stays whole and the failure is one line naming the file and the fix, exit 2; and a journal
whose last line a crash cut short."""
import json
import os

import pytest

from experiment.plan import load
from experiment.runner import RunLog
from experiment.state import Journal
from tests.fulldisk import PAGE, disk  # noqa: F401  (the fixture)
from tests.report.scenario import NX_RUN


def a_page_of_journal() -> bytes:
    """An event of another run padded to exactly one page: the next event needs a page of its own."""
    event = {"event": "completed", "run_id": "another-run", "time": 1.0, "pad": ""}
    event["pad"] = "x" * (PAGE - len(json.dumps(event, sort_keys=True)) - 1)
    data = (json.dumps(event, sort_keys=True) + "\n").encode()
    assert len(data) == PAGE
    return data


def test_the_journal_on_a_full_disk(bench, disk):
    journal = disk.path("state.jsonl")
    with open(journal, "wb") as f:
        f.write(a_page_of_journal())
    disk.fill()
    result = bench.run(bench.plan(output={"dir": disk.root}), jetson=False)
    assert result.returncode == 2
    assert result.stderr == ("edgescope-experiment: error: cannot write the sweep's journal {}: No space left on "
                             "device (0.0 MB free there); free space or pick another output.dir in the plan\n".format(journal))
    assert open(journal, "rb").read() == a_page_of_journal()
    assert bench.trainer_starts() == []  # nothing started that the journal could not record


def test_a_torn_journal_line_is_skipped_then_set_aside(bench):
    bench.out.mkdir()
    (bench.out / "state.jsonl").write_text('{"event": "started", "run_id": "t-vgg11')  # a crash mid-write
    result = bench.run(bench.plan(), jetson=False)
    assert result.returncode == 0, result.stderr
    journal = str(bench.out / "state.jsonl")
    assert "note: {} ended in a torn line (39 bytes".format(journal) in result.stderr
    assert "left out: that run is simply redone" in result.stderr  # read before the first append
    assert "moved to {}.torn".format(journal) in result.stderr
    assert [e["event"] for e in bench.journal()] == ["started", "completed"] * 2  # every line whole
    assert (bench.out / "state.jsonl.torn").read_text() == '{"event": "started", "run_id": "t-vgg11\n'


def test_wrong_shaped_journal_lines_and_latin1_output_are_notes_not_tracebacks(bench):
    """Journal lines that are JSON but no event (a list, an event without a run id, a number for one) are left
    out with a note where the journal is read; a trainer (or wrapper) printing Latin-1 is shown with U+FFFD."""
    bench.out.mkdir()
    (bench.out / "state.jsonl").write_text('[1, 2]\n{"event": "completed"}\n{"run_id": 5, "event": "completed"}\n'
                                           '"text"\n')
    result = bench.run(bench.plan(), jetson=False, FAKE_TRAINER_LATIN1="1")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "a line that is not an event (an object with text run_id and event) left out" in result.stderr
    assert "fake trainer: caf\ufffd" in result.stdout + result.stderr
    assert [e["event"] for e in bench.journal()[4:]] == ["started", "completed"] * 2


def test_the_report_on_a_full_disk_keeps_the_previous_one(bench, bench_prometheus, disk):
    plan = bench.plan(name="bench", sweep__power_mode=[None], output={"dir": disk.root},
                      report={"prometheus": bench_prometheus.url, "format": "json", "plots": False})
    run_id = load(plan).runs()[0].run_id
    Journal(disk.root).record(run_id, "completed", attempt=1, trainer_run_id=NX_RUN)
    report = disk.path("report.json")
    with open(report, "w") as f:
        f.write('{"previous": "report"}')
    disk.fill()
    result = bench.run(plan, jetson=False)
    assert result.returncode == 2
    assert result.stderr == ("edgescope-experiment: error: cannot write the report {}: No space left on device (0.0 MB free there); "
                             "free space or pick another output.dir in the plan (the report is printed above)\n"
                             .format(report))
    assert json.loads(result.stdout[result.stdout.index("{"):])["summary"][0]["run_id"] == NX_RUN
    assert open(report).read() == '{"previous": "report"}'
    assert sorted(os.listdir(disk.root)) == ["filler", "report.json", "state.jsonl"]


def test_a_run_log_on_a_full_disk_is_said_once_and_the_run_goes_on(disk, capsys):
    path = disk.path("run.log")
    with open(path, "wb") as f:
        f.write(b"x" * (PAGE - 1) + b"\n")
    disk.fill()
    log = RunLog(path)
    log.write("epoch 0/3: ...")
    log.write("epoch 1/3: ...")
    out = capsys.readouterr().out
    assert out == ("edgescope-experiment: cannot write the run's log {}: No space left on device (0.0 MB free there); free space or "
                   "pick another output.dir in the plan; the run goes on, its output on the terminal only\n"
                   .format(path))
    assert open(path, "rb").read() == b"x" * (PAGE - 1) + b"\n"


@pytest.mark.parametrize("make", [os.mkfifo, lambda path: os.symlink("/dev/zero", path)], ids=["fifo", "zero"])
def test_a_journal_that_never_ends_is_one_line_and_nothing_runs(bench, make):
    """A FIFO blocked the sweep's start for ever, /dev/zero read until memory ran out."""
    bench.out.mkdir()
    journal = str(bench.out / "state.jsonl")
    make(journal)
    result = bench.run(bench.plan(), jetson=False)
    assert result.returncode == 2 and result.stderr == (
        "edgescope-experiment: error: cannot read the sweep's journal {}: not a regular file; move it aside (its "
        "runs are then redone) or pick another output.dir in the plan\n".format(journal)), result.stderr
    assert bench.trainer_starts() == []
