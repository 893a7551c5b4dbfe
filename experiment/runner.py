"""Runs a plan: for each pending run, set the board up, drop the page cache,
run the trainer with the run's context as labels, journal the outcome; and
leave the board as it was found (``keep_board``)."""
import contextlib
import json
import os
import signal
import subprocess
import sys
from typing import Any, Dict, Iterator, List, Optional

from experiment import controls as board
from experiment import profile as passes
from experiment.plan import Plan, RunSpec, attempt_id
from experiment.state import Journal
from exporter import atomicfile
from exporter.readfile import read_regular
from trainer.progress import say as progress_say
from trainer.progress import close_bar, terminal_bar


def trainer_command(plan: Plan, run: RunSpec, labels: Dict[str, str], run_id: str,
                    pass_name: Optional[str] = None) -> List[str]:
    """The trainer's command line for one attempt (``run_id``), with the flags of the trainer issue, one
    ``--label KEY=VALUE`` per context label (they land in run_info) and a --profile pass's own flags: the one
    definition that the runner runs and --dry-run shows."""
    base = plan.command or [sys.executable, "-m", "trainer.cli"]
    cmd = list(base) + [
        "--model", run.model, "--dataset", plan.dataset, "--data-dir", run.data_dir,
        "--batch-size", str(run.batch_size), "--workers", str(run.workers),
        "--prefetch-factor", str(run.prefetch_factor), "--epochs", str(plan.epochs),
        "--run-id", run_id, "--device-name", plan.board,
        "--metrics-port", str(plan.metrics_port),
        "--results", os.path.join(plan.output_dir, run_id + ".results.jsonl"),
    ]
    if plan.max_batches is not None:
        cmd += ["--max-batches", str(plan.max_batches)]
    if plan.exporter_url is not None:
        cmd += ["--exporter-url", plan.exporter_url]
    for key, value in sorted(labels.items()):
        cmd += ["--label", "{}={}".format(key, value)]
    return cmd + plan.extra_args + passes.trainer_flags(pass_name)


def base_labels(plan: Plan, run: RunSpec) -> Dict[str, str]:
    labels = {"plan": plan.name, "dataset_location": run.location, "data_dir": run.data_dir}
    if run.power_mode is not None:
        labels["power_mode_requested"] = str(run.power_mode)
    return labels


BOARD_FILE = "board_as_found.json"  # in the output dir while a sweep has the board changed
BOARD_FILE_MAX_BYTES = 64 << 10  # a few settings (power mode, clocks, fan): ~150 bytes


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the runner is, so that it stops as on Ctrl-C: journalled, board restored."""


def raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def say(message: str, bar: Any = None) -> None:
    """A log line, above the sweep's progress bar when there is one."""
    progress_say(bar, "edgescope-experiment: " + message)


def run_plan(plan: Plan, controls, drop: bool, drop_path: str = board.DROP_CACHES, profile: bool = False) -> List[str]:
    """Every pending run of the plan (each as its profile passes with
    ``profile``), in order; returns the run_ids that failed.
    KeyboardInterrupt is journalled as ``interrupted`` and re-raised. The board is left as it was found."""
    with keep_board(plan.output_dir, controls):
        return _run_all(plan, controls, drop, drop_path, profile)


@contextlib.contextmanager
def keep_board(directory: str, controls) -> Iterator[None]:
    """Records the board's settings in ``directory`` before anything changes them and sets them back when the
    sweep ends, however it ends (Ctrl-C, SIGTERM, an error). The record goes only once the board is restored:
    a sweep killed outright (SIGKILL, power cut), or one whose restore failed, leaves it behind, and the next
    start restores from it first. Until that succeeds it stays the board as found: the board as it is then
    (the sweep's settings) is never recorded in its place."""
    path = os.path.join(directory, BOARD_FILE)
    if os.path.exists(path):
        _restore_from(path, controls, "a sweep killed before it restored the board, or whose restore failed, "
                                      "left " + path)
    found = controls.found()
    if found is None:  # nothing will be changed
        yield
        return
    if not os.path.exists(path):
        try:
            atomicfile.write_bytes(path, json.dumps(found, sort_keys=True).encode("utf-8"))
        except OSError as exc:
            raise board.ControlError(atomicfile.cannot_write("the board's settings", path, exc,
                                                             "pick another output.dir in the plan"))
    try:
        yield
    finally:
        _restore_from(path, controls, "the sweep ended")


def _restore_from(path: str, controls, why: str) -> None:
    """Restores the settings stored at ``path`` (Ctrl-C and SIGTERM held off meanwhile), then removes it; where
    a setting could not be restored, the record stays for the next start and that is said in one line."""
    held = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            state = json.loads(read_regular(path, BOARD_FILE_MAX_BYTES).decode("utf-8"))
            if not isinstance(state, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            print("edgescope-experiment: cannot read the board's settings {} ({}): they are not restored; check "
                  "them by hand ('sudo nvpmodel -q', 'sudo jetson_clocks --show', the fan in 'jtop')".format(
                      path, exc), file=sys.stderr, flush=True)
            os.unlink(path)
            return
        failed = controls.restore(state)
        for line in failed:
            print("edgescope-experiment: " + line, file=sys.stderr, flush=True)
        if failed:
            print("edgescope-experiment: the board as found stays recorded in {}: the next sweep restores it from "
                  "there first (delete the file once the board is set back by hand)".format(path),
                  file=sys.stderr, flush=True)
            return
        say("{}: board restored as found: {}".format(why, describe(state)))
        os.unlink(path)
    finally:
        for s, handler in held.items():
            signal.signal(s, handler)


def describe(state: Dict[str, Any]) -> str:
    parts = []
    if "nvpmodel_name" in state:
        parts.append("power mode {} (id {})".format(state["nvpmodel_name"], state["nvpmodel_id"]))
    if "jetson_clocks" in state:
        parts.append("jetson_clocks " + ("on" if state["jetson_clocks"] else "off"))
    if "fan_profile" in state:
        parts.append("fan " + state["fan_profile"] + (" at {:g} %".format(state["fan_speed"])
                                                      if state.get("fan_speed") is not None else ""))
    return ", ".join(parts) or "nothing recorded"


def _run_all(plan: Plan, controls, drop: bool, drop_path: str, profile: bool) -> List[str]:
    journal = Journal(plan.output_dir)
    status = journal.last_status()
    failed = []
    runs = passes.expand(plan.runs(), profile)
    # On a terminal, a bar over the sweep: its ETA comes from this sweep's runs (those done before are its start)
    bar = terminal_bar(len(runs), "sweep", "run",
                       initial=sum(status.get(r.run_id) == "completed" for r, _ in runs))
    for index, (run, pass_name) in enumerate(runs, 1):
        where = "[{}/{}] {}".format(index, len(runs), run.run_id)
        if status.get(run.run_id) == "completed":
            say("{}: done before, skipped".format(where), bar)
            continue
        if run.run_id in status:
            say("{}: redoing ({} last time)".format(where, status[run.run_id]), bar)
        labels = base_labels(plan, run)
        labels.update(controls.prepare(run.power_mode, plan.jetson_clocks, plan.fan_max))
        labels["cpu_count"] = str(len(os.sched_getaffinity(0)))  # after the power mode: it may take cores offline
        if pass_name is not None:
            labels.update(passes.prepare(pass_name, run.data_dir))
        elif drop:
            board.drop_caches(drop_path)
            labels["page_cache"] = "dropped"
        else:
            labels["page_cache"] = "kept"
        attempt = journal.attempts(run.run_id) + 1
        trainer_run_id = attempt_id(run.run_id, attempt)  # each attempt's epochs under an id of their own
        cmd = trainer_command(plan, run, labels, trainer_run_id, pass_name)
        ids = {"attempt": attempt, "trainer_run_id": trainer_run_id}
        journal.record(run.run_id, "started", context=labels, command=cmd, **ids)
        say("{}: training as {} ({})".format(where, trainer_run_id,
                                             " ".join("{}={}".format(k, v) for k, v in sorted(labels.items()))), bar)
        log_path = os.path.join(plan.output_dir, trainer_run_id + ".log")
        code = _run_logged(cmd, log_path, run.run_id, journal, ids, bar)
        if code == 0:
            journal.record(run.run_id, "completed", **ids)
            say("{}: completed".format(where), bar)
        else:
            journal.record(run.run_id, "failed", returncode=code, **ids)
            say("{}: FAILED with exit code {} (see {}); it is redone next time".format(where, code, log_path), bar)
            failed.append(run.run_id)
        if bar is not None:
            bar.update(1)
    close_bar(bar)
    return failed


class RunLog:
    """A run's log file, each line appended whole (exporter.atomicfile). A write that fails (a full disk) is
    said once and the run goes on: its output still reaches the terminal, and the journal records its end."""

    def __init__(self, path: str, bar: Any = None) -> None:
        self.path = path
        self._bar = bar
        self._failed = False

    def write(self, line: str) -> None:
        if self._failed:
            return
        try:
            note = atomicfile.append_lines(self.path, [line])
        except OSError as exc:
            self._failed = True
            say(atomicfile.cannot_write("the run's log", self.path, exc, "pick another output.dir in the plan") +
                "; the run goes on, its output on the terminal only", self._bar)
            return
        if note:
            say("note: " + note, self._bar)


def _run_logged(cmd: List[str], log_path: str, run_id: str, journal: Journal, ids: Dict[str, object],
                bar: Any = None) -> int:
    """The trainer's output goes to the terminal (above the sweep's bar) and to its log file."""
    log = RunLog(log_path, bar)
    try:
        # a wrapper (the plan's command) may print Latin-1 or any bytes: shown with U+FFFD, never a traceback
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                 encoding="utf-8", errors="replace")
    except OSError as exc:
        log.write("cannot start {}: {}".format(cmd[0], exc))
        return 127
    try:
        assert child.stdout is not None
        for line in child.stdout:
            progress_say(bar, line.rstrip("\n"))
            log.write(line.rstrip("\n"))
        return child.wait()
    except KeyboardInterrupt as stop:
        # Ctrl-C reached the trainer too (same process group): let it stop at a batch boundary.
        # SIGTERM was sent to the runner alone: pass it on.
        if isinstance(stop, Terminated):
            child.terminate()
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        journal.record(run_id, "interrupted", **ids)
        raise


def completed_runs(plan: Plan, profile: bool = False) -> List[str]:
    """The trainer run ids of the attempts that completed the plan's runs (their passes with ``profile``)."""
    last = Journal(plan.output_dir).last_events()
    return [last[r.run_id].get("trainer_run_id", r.run_id) for r, _ in passes.expand(plan.runs(), profile)
            if r.run_id in last and last[r.run_id]["event"] == "completed"]


def report_arguments(plan: Plan, run_ids: List[str]) -> Optional[List[str]]:
    """edgescope-report's arguments for the sweep's completed runs, or None
    when the plan names no Prometheus."""
    if not plan.prometheus or not run_ids:
        return None
    args = ["--prometheus", plan.prometheus, "--format", plan.report_format,
            "--warmup-epochs", str(plan.warmup_epochs)]
    if plan.plots:
        args += ["--plots", os.path.join(plan.output_dir, "plots")]
    for run_id in run_ids:
        args += ["--run", run_id]
    return args
