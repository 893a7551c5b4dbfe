"""edgescope-experiment PLAN.yaml: the reference procedure as a sweep over
models × batch sizes × workers × prefetch × power modes × dataset locations.
Before each run: power mode, jetson_clocks on, fan at maximum (through jtop),
sync and drop the page cache (root); then the trainer; then the report.
The board's power mode, jetson_clocks and fan are set back as found at the end.
Resumable: rerun the same command after an interruption."""
import argparse
import contextlib
import io
import os
import shlex
import signal
import sys
from typing import List, Optional

from experiment import controls as board
from experiment.plan import PlanError, attempt_id, load
from experiment.profile import expand
from experiment.runner import (Terminated, base_labels, completed_runs, raise_terminated, report_arguments,
                               run_plan, say, trainer_command)
from experiment.state import Journal, JournalError
from exporter import atomicfile
from exporter.arguments import docs_epilog
from exporter.yamlfile import one_line
from report.cli import OneLineParser

EXTENSIONS = {"table": "txt", "markdown": "md", "csv": "csv", "json": "json"}


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="edgescope-experiment", description=__doc__, epilog=docs_epilog("experiments.md"))
    p.add_argument("plan", metavar="PLAN.yaml", help="the sweep plan (see experiment/plans/reference.yaml)")
    p.add_argument("--dry-run", action="store_true", help="print the runs and their commands; run nothing")
    p.add_argument("--no-drop-caches", action="store_true",
                   help="do not sync + drop the page cache before each run (dropping it needs root)")
    p.add_argument("--no-report", action="store_true", help="do not produce the report at the end")
    p.add_argument("--profile", action="store_true",
                   help="train each run three times: on synthetic input (<run_id>-synthetic: the model's "
                        "compute alone), its dataset evicted from the page cache (<run_id>-cold) and then read "
                        "into it (<run_id>-cached): the report compares the cold pass's what-if with the cached "
                        "pass; no root needed")
    return p


def error(message: str, code: int = 2) -> int:
    print("edgescope-experiment: error: " + one_line(message), file=sys.stderr)  # a path may hold a newline
    return code


def dry_run(plan, drop: bool, profile: bool) -> None:
    journal = Journal(plan.output_dir)
    status = journal.last_status()
    passes = expand(plan.runs(), profile)
    runs = [run for run, _ in passes]
    say("plan {}: {} runs, {} epochs each; before each run: {}".format(
        plan.path, len(runs), plan.epochs, ", ".join(x for x in (
            "power mode" if any(r.power_mode is not None for r in runs) else "",
            "jetson_clocks on" if plan.jetson_clocks else "", "fan max" if plan.fan_max else "",
            "synthetic input, dataset evicted (cold) or read in (cached)" if profile else
            ("sync + drop caches" if drop else "page cache kept")) if x)))
    for run, pass_name in passes:
        state = status.get(run.run_id, "pending")
        state = "done (skipped)" if state == "completed" else ("redo ({})".format(state) if state != "pending"
                                                                else state)
        labels = base_labels(plan, run)
        print("{}  [{}]  power_mode={}  storage={}".format(run.run_id, state,
                                                           "as is" if run.power_mode is None else run.power_mode,
                                                           run.location))
        next_id = attempt_id(run.run_id, journal.attempts(run.run_id) + 1)
        command = trainer_command(plan, run, labels, next_id, pass_name)
        print("    " + shlex.join(command))  # pasted, runs what is shown
    args = report_arguments(plan, [r.run_id for r in runs])
    print("then: " + (shlex.join(["edgescope-report"] + args) if args else "no report (report.prometheus not set)"))


def produce_report(plan, profile: bool) -> int:
    args = report_arguments(plan, completed_runs(plan, profile))
    if args is None:
        say("no report: set report.prometheus in the plan (or no run completed)")
        return 0
    from report.cli import main as report_main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = report_main(args)
    if code == 0:
        path = os.path.join(plan.output_dir, "report." + EXTENSIONS[plan.report_format])
        sys.stdout.write(out.getvalue())
        try:
            atomicfile.write_bytes(path, out.getvalue().encode("utf-8"))
        except OSError as exc:
            return error(atomicfile.cannot_write("the report", path, exc,
                                                 "pick another output.dir in the plan (the report is printed above)"))
        say("report written to " + path)
    return code


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        plan = load(args.plan)
    except PlanError as exc:
        return error(str(exc))
    drop = plan.drop_caches and not args.no_drop_caches
    controls = board.find_controls()
    say(controls.describe())
    try:
        controls.check_power_modes(plan.sweep["power_mode"])
        if args.dry_run:
            dry_run(plan, drop, args.profile)
            return 0
        for name, data_dir in plan.sweep["dataset_location"].items():
            if not os.path.isdir(data_dir):
                return error("{}: sweep.dataset_location.{}: no directory {} (create the dataset there, e.g. "
                             "edgescope-dataset, or fix the path)".format(plan.path, name, data_dir))
        if drop and not args.profile:
            board.check_can_drop_caches()
        os.makedirs(plan.output_dir, exist_ok=True)
        default = signal.signal(signal.SIGTERM, raise_terminated)  # stop as on Ctrl-C: the board is restored
        try:
            failed = run_plan(plan, controls, drop, profile=args.profile)
        finally:
            signal.signal(signal.SIGTERM, default)
    except board.ControlError as exc:
        return error(str(exc), 1)
    except JournalError as exc:
        return error(str(exc))
    except Terminated:
        return error("terminated (SIGTERM); completed runs are kept: rerun the same command to resume", 143)
    except KeyboardInterrupt:
        return error("interrupted; completed runs are kept: rerun the same command to resume", 130)
    except OSError as exc:
        return error("{}: {}".format(exc.filename or plan.output_dir, exc.strerror or exc), 1)
    code = 0 if args.no_report else produce_report(plan, args.profile)
    if failed:
        return error("{} run(s) failed: {}; rerun the same command to redo them".format(
            len(failed), ", ".join(failed)), 1)
    return code


if __name__ == "__main__":
    sys.exit(main())
