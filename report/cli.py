"""edgescope-report: per-epoch and averaged characterisation tables (E2E, fetch
stall, compute, energy, power, read IOPS/MB/s, page cache) and paper-ready plots,
read from any server with the Prometheus HTTP API."""
import argparse
import datetime
import importlib
import math
import re
import sys
import time
from typing import Any, Dict, List, NoReturn, Optional

from exporter import atomicfile
from exporter.arguments import docs_epilog, number_in, utf8_argument
from exporter.yamlfile import one_line
from report.collect import collect
from report.html_page import as_html
from report.latex import as_latex
from report.powermode_report import candidates_of_conf
from report.powermode_textfile import exposition
from report.prom import Prometheus, ReportError
from report.render import COLUMNS, DEFAULT_COLUMNS, build, render
from report.summary import FIELDS

RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])\Z")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
LAST_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: the last time RFC 3339 (and the report's dates) can write
MAX_TIMEOUT = 86400.0


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line and exit status 2, not the usage block."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(2, "{}: error: {}\n".format(self.prog, one_line(message)))


def parse_time(text: str, now: float) -> float:
    """Unix seconds, RFC 3339 (``2026-11-27T02:00:00Z``) or a duration ago (``6h``), between 1970 and 9999."""
    seconds = _time_or_none(text, now)
    if seconds is None:
        raise argparse.ArgumentTypeError("{!r} is not a time: use unix seconds, RFC 3339 "
                                         "(2026-11-27T02:00:00Z) or a duration ago (6h, 2d)".format(text))
    if not 0 <= seconds <= LAST_TIME:  # also NaN and infinities
        raise argparse.ArgumentTypeError("{!r} is not a time between 1970 and 9999".format(text))
    return seconds


def _time_or_none(text: str, now: float) -> Optional[float]:
    match = RELATIVE.match(text)
    if match:
        return now - float(match.group(1)) * UNIT_SECONDS[match.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.timezone.utc)
        return parsed.timestamp()
    except (ValueError, OverflowError):
        return None


# --timeout: seconds per HTTP query; --storage-bps, --power-budget, --time-budget: any finite number above 0
timeout_seconds = number_in(0, MAX_TIMEOUT, above=True)
positive_number = number_in(0, math.inf, above=True)


def column_names(text: str) -> List[str]:
    """--columns: ``all`` or FIELDS names, comma-separated."""
    if text == "all":
        return list(FIELDS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in FIELDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError("{!r} is not a list of columns: give all, or some of {}".format(
            text, ",".join(FIELDS)))
    return names


# the flags that shape or add to the report, which --timeline (an epoch's drawing, instead of the report) never reads
REPORT_ONLY = ("plots", "pareto", "power_budget", "time_budget", "storage_bps", "nvpmodel_conf", "powermode_textfile")


def prom_file(text: str) -> str:
    """--powermode-textfile: node_exporter's textfile collector reads only *.prom files."""
    if not text.endswith(".prom"):
        raise argparse.ArgumentTypeError("{!r}: node_exporter's textfile collector reads only files named *.prom: "
                                         "name it e.g. powermode.prom".format(text))
    return text


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="edgescope-report", description=__doc__, epilog=docs_epilog("reading-the-report.md"))
    p.add_argument("--prometheus", type=utf8_argument, default="http://localhost:9090", metavar="URL",
                   help="base URL of Prometheus (or any server with its HTTP API); default %(default)s")
    p.add_argument("--run", type=utf8_argument, action="append", default=[], metavar="ID", dest="runs",
                   help="a run_id to report (repeatable); default: every run between --since and --until")
    p.add_argument("--since", metavar="TIME", help="start of the time range (unix s, RFC 3339 or e.g. 6h ago); "
                   "default: --until minus 30 days")
    p.add_argument("--until", metavar="TIME", help="end of the time range; default: now")
    p.add_argument("--warmup-epochs", type=int, default=1, metavar="N",
                   help="leave epochs 0..N-1 out of the means (default 1: epoch 0, as in the reference method)")
    p.add_argument("--format", choices=("table", "csv", "json", "markdown", "html", "latex"), default="table",
                   help="table: for a terminal of 120 columns; html: one self-contained page with the plots "
                        "embedded; latex: booktabs tables (csv, json, html and latex hold every column)")
    p.add_argument("--columns", type=column_names, metavar="NAMES",
                   help="the numbers --format table and markdown show, comma-separated: all, or some of {} "
                        "(default: the reference method's, {})".format(
                            ", ".join(FIELDS), ", ".join(COLUMNS[n][0] for n in DEFAULT_COLUMNS)))
    p.add_argument("--section", choices=("epochs", "summary", "comparison"), default="epochs",
                   help="which table --format csv writes (default epochs)")
    p.add_argument("--output", metavar="FILE", help="write the report into FILE instead of stdout")
    p.add_argument("--plots", metavar="DIR", help="also write PNG plots into DIR")
    p.add_argument("--storage-bps", type=positive_number, metavar="N",
                   help="also show each run's what-if with storage reading N bytes/s: the trainer's replay of it "
                        "(edgescope-train --what-if-storage-bps N), missing where the trainer did not replay it")
    p.add_argument("--pareto", action="store_true",
                   help="add the time vs energy per epoch Pareto front per device × workload, with each "
                        "configuration's what-ifs as predicted points (and pareto.png with --plots)")
    p.add_argument("--power-budget", type=positive_number, metavar="W",
                   help="with --pareto: recommend the fastest measured configuration whose average power, at the "
                        "upper end of its bar (its epochs' spread × Student t), is at most W watts, on the front or "
                        "not (with --time-budget: the least energy within both; replayed power and a single kept "
                        "epoch fit no budget)")
    p.add_argument("--time-budget", type=positive_number, metavar="S",
                   help="with --pareto: recommend the least-energy measured configuration whose time per epoch, at "
                        "the upper end of its bar, is at most S s, on the front or not (replayed power and a "
                        "single kept epoch fit no budget)")
    p.add_argument("--nvpmodel-conf", metavar="FILE",
                   help="also predict each workload measured in >= 2 power modes in every mode of this board's "
                        "nvpmodel.conf (a copy of its /etc/nvpmodel.conf); without it, in the modes other workloads "
                        "of the device were measured in")
    p.add_argument("--powermode-textfile", type=prom_file, metavar="FILE",
                   help="also write the power-mode what-if, each workload's measured and predicted modes with their "
                        "bars, into FILE (a .prom file in node_exporter's --collector.textfile.directory): the "
                        "comparison dashboard shows them")
    p.add_argument("--timeline", type=utf8_argument, metavar="RUN",
                   help="instead of the report, draw one epoch of RUN's loader timeline (edgescope-train "
                        "--timeline-dir) as a PNG, --output (default RUN-epoch-N.png), with a Chrome trace beside "
                        "it (.trace.json: open it in ui.perfetto.dev); RUN may also be an epoch-N.json file")
    p.add_argument("--epoch", type=int, metavar="N", help="with --timeline: the epoch (default: the last written)")
    p.add_argument("--timeline-dir", type=utf8_argument, metavar="DIR",
                   help="where edgescope-train --timeline-dir wrote the timelines (default for --timeline: "
                        "timelines); with --format html or --plots, each run's last epoch is drawn too")
    p.add_argument("--timeout", type=timeout_seconds, default=10.0, metavar="S", help="HTTP timeout per query (default 10)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.timeline is not None:
        given = ["--" + name.replace("_", "-") for name in REPORT_ONLY if getattr(args, name) not in (None, False)]
        if given:  # drawing a timeline reads no report: they would be silently ignored
            p.error("{} {} with the report, not --timeline: run them as two commands".format(
                ", ".join(given), "goes" if len(given) == 1 else "go"))
        return draw_timeline(args)
    if args.epoch is not None:
        p.error("--epoch needs --timeline")
    if args.timeline_dir is not None and not (args.plots or args.format == "html"):
        p.error("--timeline-dir needs --timeline, --plots or --format html")
    now = time.time()
    try:
        until = parse_time(args.until, now) if args.until else now
    except argparse.ArgumentTypeError as exc:
        p.error("argument --until: {}".format(exc))
    try:
        since = parse_time(args.since, now) if args.since else until - 30 * 86400
    except argparse.ArgumentTypeError as exc:
        p.error("argument --since: {}".format(exc))
    if since >= until:
        p.error("--since must be before --until")
    if args.warmup_epochs < 0:
        p.error("--warmup-epochs must be >= 0")
    if (args.power_budget is not None or args.time_budget is not None) and not args.pareto:
        p.error("--power-budget and --time-budget need --pareto")
    if args.columns is not None and args.format not in ("table", "markdown"):
        p.error("--columns goes with --format table or markdown: {} holds every column".format(args.format))
    try:
        power_modes = [(name, mode.labels()) for name, mode in candidates_of_conf(args.nvpmodel_conf)] \
            if args.nvpmodel_conf else []
    except ValueError as exc:
        p.error(one_line(str(exc)))
    try:
        collected = collect(Prometheus(args.prometheus, args.timeout), args.runs, since, until)
        report = build(collected, args.warmup_epochs, {"prometheus": args.prometheus, "since": since,
                                                       "until": until, "storage_bps": args.storage_bps,
                                                       "pareto": args.pareto, "power_budget": args.power_budget,
                                                       "time_budget": args.time_budget,
                                                       "power_modes": power_modes})
        images = _plots().png_images(collected.runs, report) if args.plots or args.format == "html" else {}
        if args.timeline_dir is not None:
            images.update(_plots("report.timeline_plot").last_epoch_images(
                args.timeline_dir, [run.run_id for run in collected.runs]))
        text = formatted(report, args.format, args.section, images, args.columns or list(DEFAULT_COLUMNS))
    except ReportError as exc:
        print("edgescope-report: error: {}".format(one_line(str(exc))), file=sys.stderr)  # a path may hold \n
        return 1
    for note in collected.notes:
        print("edgescope-report: warning: " + one_line(note), file=sys.stderr)
    try:
        if args.plots:
            for written in _plots().write_plots(images, args.plots):
                print("edgescope-report: wrote " + written, file=sys.stderr)
    except OSError as exc:  # a failed write leaves the previous file whole
        return _cannot_write("plot", exc.filename or args.plots, exc, "--plots")
    if args.powermode_textfile is not None:
        try:
            atomicfile.write_bytes(args.powermode_textfile, exposition(report["power_modes"]))
        except OSError as exc:
            return _cannot_write("power-mode textfile", args.powermode_textfile, exc, "--powermode-textfile")
        print("edgescope-report: wrote " + args.powermode_textfile, file=sys.stderr)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        atomicfile.write_bytes(args.output, text.encode("utf-8"))
    except OSError as exc:
        return _cannot_write("report", args.output, exc, "--output")
    print("edgescope-report: wrote " + args.output, file=sys.stderr)
    return 0


def _cannot_write(what: str, path: str, error: OSError, flag: str) -> int:
    print("edgescope-report: error: " + one_line(atomicfile.cannot_write(what, path, error, "pick another " + flag)),
          file=sys.stderr)
    return 2


def draw_timeline(args: argparse.Namespace) -> int:
    """--timeline: the epoch's PNG and trace. A missing directory, run or epoch, or a file that is not a
    timeline, is a mistake in the command: one line and exit 2, as for a bad flag."""
    try:
        timelines = _plots("report.timeline_plot")
        by_run = not args.timeline.endswith(".json")  # else an epoch file itself
        if not by_run and args.epoch is not None:
            raise ReportError("--epoch {} with the file {}: give the run id instead, or that epoch's file".format(
                args.epoch, args.timeline))
        path = timelines.find(args.timeline_dir or "timelines", args.timeline, args.epoch) if by_run \
            else args.timeline
        epoch = timelines.read(path)
        if by_run and args.epoch is None:
            print("edgescope-report: epoch {} of run {}: the last one written (--epoch N for another)".format(
                epoch.epoch, epoch.run_id), file=sys.stderr)
        written = timelines.write(epoch, args.output or timelines.default_output(path))
    except ReportError as exc:
        print("edgescope-report: error: {}".format(one_line(str(exc))), file=sys.stderr)  # a path may hold \n
        return 2
    for path in written:
        print("edgescope-report: wrote " + path, file=sys.stderr)
    return 0


def _plots(module: str = "report.plots") -> Any:
    """report.plots (or another module drawing with matplotlib, the report extra): missing, one line, not a
    traceback."""
    try:
        plots = importlib.import_module(module)
    except ImportError as exc:
        raise ReportError("--plots and --format html need matplotlib ({}); install the report extra: "
                          "pip install '.[report]'".format(exc))
    return plots


def formatted(report: dict, fmt: str, section: str, images: Dict[str, bytes], columns: List[str]) -> str:
    """The report in --format: html embeds the plots' PNG ``images``; the table and markdown show ``columns``."""
    if fmt == "html":
        return as_html(report, _plots().data_uris(images))
    if fmt == "latex":
        return as_latex(report)
    return render(report, fmt, section, columns)


if __name__ == "__main__":
    sys.exit(main())
