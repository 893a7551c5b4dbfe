"""How right are the trainer's what-ifs? (issue 18, "Prove it")

Runs the real trainer (``python -m trainer.cli``, CPU, one torch thread, mobilenet_v3_small on a JPEG
imagefolder) over a grid: DataLoader workers x storage x image size. Storage is ``cached`` (the dataset read
once into the page cache before the run) or ``cold``: read from a slow disk at 4 MiB/s (an SD card) with
``--evict-dataset`` (every epoch reads from the disk); one workers setting is also measured cold at a second
rate (8 MiB/s). The slow disk is bench/slowdisk.py's FUSE view (``--disk fuse``: every read takes its size over
the rate) or an ext4 loop disk of its own read through a cgroup v1 blkio throttle (``--disk throttle``). Image
size 64 is light preprocessing, 224 heavy (the files are generated at that size and cropped to it).

Each configuration that another one predicts is then measured against the prediction: cold -> cached
(``dataset_cached``, same workers and size), W -> 2W workers (``workers_doubled`` cold,
``workers_doubled_storage_scales`` cached, same storage and size), one storage rate -> the other
(``storage_bps=N``). Error = (predicted mean - measured mean) / measured mean over the kept epochs (epoch 0
dropped), its bar as the report draws it (report.whatif.compared): both spreads (std over the kept epochs);
beside it how far the measured run's compute moved from the compute the prediction assumed (the machine's speed
between the two runs, or an effect on the steps the replay misses) and, for ``storage_bps=N``, how far the read
rate the measured run's readers got was from N (a throttle's burst credit serves more than its nominal rate).
Prints a markdown table, the summary against the issue's targets (median |error| <= 10 %, worst <= 25 % on a
quiet machine, every error inside its bar) and the load average before and after; writes every epoch's record to
``--out``. A benchmark: it prints, never fails.

    sudo PYTHONPATH=. python3 bench/whatif_accuracy.py --out whatif.json          # ~10 min on 2 cores
    sudo PYTHONPATH=. python3 bench/whatif_accuracy.py --quick --out quick.json    # ~3 min smoke run

Without root and /dev/fuse (``--disk throttle``: cgroup v1 blkio) only the cached half runs.

On a CPU the model's step (mobilenet_v3_small: ~14 ms an image at 64 px, ~60 ms at 224 px on one core) hides
JPEGs of the crop's own size even at 4 MiB/s (3 KB and 28 KB: 0.7 and 7 ms to read), so the default grid checks
the what-ifs where they should predict little change. ``--file-size 384`` (80 KB files, 19 ms at 4 MiB/s) makes
the 64 px cold runs storage-bound. blk-throttle lets one 100 ms slice's worth through at once after an idle
spell: a worker that idles between batches (a hidden loader) reads faster than the nominal rate; one that
never idles (storage the bottleneck) reads at it. The FUSE disk takes its time over every read.
"""
import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench import blkio, slowdisk  # noqa: E402
from exporter import atomicfile  # noqa: E402
from trainer.pagecache import dataset_size, warm  # noqa: E402
from report.whatif import compared  # noqa: E402
from trainer.precision import with_spread  # noqa: E402

CACHED = 0  # Config.storage: 0 is the page cache, else the throttled disk's read rate in bytes/s
MIB = 1024 * 1024
MEDIAN_TARGET, WORST_TARGET = 0.10, 0.25


class Config(NamedTuple):
    size: int  # image side in pixels (files and crop)
    workers: int
    storage: int  # CACHED or bytes/s


class Comparison(NamedTuple):
    predicted: Tuple[float, float]  # mean, std over the source's kept epochs
    measured: Tuple[float, float]  # mean, std over the target's kept epochs
    error: float  # (predicted - measured) / measured
    error_sd: float  # its bar: the relative spreads combined (report.whatif.compared)
    within_noise: bool  # the mean ± std intervals overlap
    inside_bar: bool  # |error| <= error_sd
    # the target's mean compute over the compute the prediction assumed, - 1: the machine's speed between the
    # runs, or an effect on the steps the replay misses (None where the records carry no predicted compute)
    compute_drift: Optional[float] = None
    compute_covers: Optional[bool] = None  # the error is no larger than the spreads and the compute's move


class Row(NamedTuple):
    target: Config
    source: Config
    what_if: str
    comparison: Optional[Comparison]  # None: not predicted
    why: str  # the prediction's basis when it was not predicted
    # storage_bps=N only: the read rate the target's readers got (bytes / read seconds) over N, - 1. The replay
    # assumes N; a throttle's burst credit can serve more, which the prediction cannot know.
    storage_drift: Optional[float] = None


def label(config: Config) -> str:
    storage = "cached" if config.storage == CACHED else "cold {:g} MiB/s".format(config.storage / MIB)
    return "{} px, {} worker{}, {}".format(config.size, config.workers, "" if config.workers == 1 else "s", storage)


def storage_key(bps: int) -> str:
    """The what-if's name as the trainer writes it (its flag value is a float, formatted with {:g})."""
    return "storage_bps={:g}".format(float(bps))


def plan(sizes: Sequence[int], workers: Sequence[int], rates: Sequence[int], storage_workers: int,
         cold: bool) -> List[Config]:
    """The configurations in run order: per size, cached for every workers setting, then cold at the first rate
    for every workers setting, then cold at the other rates for ``storage_workers`` only."""
    configs = []
    for size in sizes:
        configs += [Config(size, w, CACHED) for w in workers]
        if cold:
            configs += [Config(size, w, rates[0]) for w in workers]
            configs += [Config(size, storage_workers, rate) for rate in rates[1:]]
    return configs


def pairings(configs: Sequence[Config]) -> List[Tuple[Config, Config, str]]:
    """(measured, predicted from, what-if) for every measured configuration that another one's what-if reaches."""
    out = []
    for t in configs:
        for s in configs:
            if s == t or s.size != t.size:
                continue
            if t.storage == CACHED and s.storage != CACHED and s.workers == t.workers:
                out.append((t, s, "dataset_cached"))
            elif s.storage == t.storage and 2 * s.workers == t.workers:
                out.append((t, s, "workers_doubled_storage_scales" if t.storage == CACHED else "workers_doubled"))
            elif CACHED not in (s.storage, t.storage) and s.storage != t.storage and s.workers == t.workers:
                out.append((t, s, storage_key(t.storage)))
    return out


def kept(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The epochs that count: complete ones after the warm-up epoch 0."""
    return [r for r in records if r.get("complete") and r["epoch"] >= 1]


def mean_sd(values: Sequence[float]) -> Tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def compare(predicted: Sequence[float], measured: Sequence[float],
            predicted_compute: Optional[Sequence[float]] = None,
            measured_compute: Optional[Sequence[float]] = None) -> Comparison:
    """The prediction's error against the measurement, each over its own epochs, as the report judges it
    (report.whatif.compared): the bar from both spreads; beside it how far the compute moved from the
    predicted."""
    p, sp = mean_sd(predicted)
    m, sm = mean_sd(measured)
    assumed = statistics.mean(predicted_compute) if predicted_compute and measured_compute else None
    drift = None if assumed is None else statistics.mean(measured_compute) - assumed  # type: ignore
    verdict = compared(p, 0.0 if math.isnan(sp) else sp, m, None if math.isnan(sm) else sm, drift)
    error, bar = verdict["e2e_error_ratio"], verdict["e2e_error_spread_ratio"]
    return Comparison((p, sp), (m, sm), error, bar, verdict["within_noise"], abs(error) <= bar,
                      None if drift is None else drift / assumed, verdict["compute_covers"])  # type: ignore


def read_rate(records: Sequence[Dict[str, Any]], epoch_bytes: Optional[float]) -> Optional[float]:
    """Bytes per second of read time, each reader's rate: an epoch reads the whole dataset (``epoch_bytes``)
    within the trainer's --results read_s. (/proc/<pid>/io cannot say it: read_bytes misses a FUSE disk's
    reads, rchar counts the workers' other reads.)"""
    seconds = sum(r.get("read_s") or 0.0 for r in records)
    return None if not epoch_bytes or seconds <= 0 else epoch_bytes * len(records) / seconds


def rows(runs: Dict[Config, List[Dict[str, Any]]],
         dataset_bytes: Optional[Dict[int, float]] = None) -> List[Row]:
    """Every pairing whose two runs both have kept epochs, compared; ``dataset_bytes`` (per image size: the
    bytes one epoch reads) gives the storage what-ifs their drift."""
    out = []
    for target, source, name in pairings(list(runs)):
        source_epochs, target_epochs = kept(runs[source]), kept(runs[target])
        if not source_epochs or not target_epochs:
            continue
        values = [(r.get("predicted_duration_s") or {}).get(name) for r in source_epochs]
        if any(v is None for v in values):
            why = next(((r.get("prediction_basis") or {}).get(name) for r in source_epochs
                        if (r.get("predicted_duration_s") or {}).get(name) is None), None)
            out.append(Row(target, source, name, None, why or "not in the records"))
            continue
        predicted_compute = [(r.get("predicted_compute_s") or {}).get(name) for r in source_epochs]
        measured_compute = [r.get("compute_s") for r in target_epochs]
        known = None not in predicted_compute and None not in measured_compute
        rate = read_rate(target_epochs, (dataset_bytes or {}).get(target.size)) \
            if name.startswith("storage_bps=") else None
        out.append(Row(target, source, name, compare(values, [r["duration_s"] for r in target_epochs],
                                                     predicted_compute if known else None,
                                                     measured_compute if known else None), "",
                       None if rate is None else rate / target.storage - 1))
    return out


def table(result_rows: Sequence[Row]) -> str:
    """The comparison as a markdown table."""
    lines = ["| configuration measured | predicted from | predicted | measured | error | within noise | compute drift "
             "| storage drift |", "|---|---|---|---|---|---|---|---|"]
    for row in result_rows:
        source = "{}: `{}`".format(label(row.source), row.what_if)
        c = row.comparison
        if c is None:
            lines.append("| {} | {} | not predicted ({}) | | | | | |".format(label(row.target), source, row.why))
            continue
        spread = [None if math.isnan(sd) else sd for sd in (c.predicted[1], c.measured[1], c.error_sd)]
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
            label(row.target), source, with_spread(c.predicted[0], spread[0], "s"),
            with_spread(c.measured[0], spread[1], "s"), with_spread(c.error, spread[2], percent=True),
            "yes" if c.within_noise else "no",
            *("" if drift is None else "{:+.0f} %".format(100 * drift) for drift in (c.compute_drift,
                                                                                      row.storage_drift))))
    return "\n".join(lines)


def summary(result_rows: Sequence[Row]) -> List[str]:
    """Median and worst |error| and the errors inside their bars, each against the issue's target."""
    compared = [r for r in result_rows if r.comparison is not None]
    if not compared:
        return ["no prediction could be compared with a measurement"]
    errors = [abs(r.comparison.error) for r in compared]
    worst = max(compared, key=lambda r: abs(r.comparison.error))
    inside = sum(r.comparison.inside_bar for r in compared)
    lines = ["median |error| {:.1f} % (target <= {:.0f} %): {}".format(
                 100 * statistics.median(errors), 100 * MEDIAN_TARGET,
                 "PASS" if statistics.median(errors) <= MEDIAN_TARGET else "FAIL"),
             "worst |error| {:.1f} % ({} from {}, `{}`) (target <= {:.0f} %): {}".format(
                 100 * max(errors), label(worst.target), label(worst.source), worst.what_if, 100 * WORST_TARGET,
                 "PASS" if max(errors) <= WORST_TARGET else "FAIL"),
             "errors inside their own bar: {} of {} (target: all): {}".format(
                 inside, len(compared), "PASS" if inside == len(compared) else "FAIL"),
             # the bar's calibration: a bar of one standard deviation that holds every error is too wide
             "inside once their bar {:.0f} %, twice {:.0f} % (a one-standard-deviation bar of an honest "
             "prediction holds about 68 % and 95 %)".format(
                 100 * inside / len(compared),
                 100 * sum(abs(r.comparison.error) <= 2 * r.comparison.error_sd for r in compared) / len(compared))]
    drifted = [r.comparison for r in compared if r.comparison.compute_drift is not None]
    if drifted:
        drifts = [abs(c.compute_drift) for c in drifted]  # type: ignore
        lines.append("compute moved from the predicted: median {:.1f} %, largest {:.1f} %; the errors outside "
                     "their bar that the compute's move covers: {} of {}".format(
                         100 * statistics.median(drifts), 100 * max(drifts),
                         sum(1 for c in drifted if c.compute_covers and not c.inside_bar),
                         sum(1 for c in drifted if not c.inside_bar)))
    storage = [r for r in compared if r.storage_drift is not None]
    if storage:
        lines.append("storage what-ifs: the measured configuration's readers got {} of the rate the what-if names"
                     .format(", ".join("{:+.0f} %".format(100 * r.storage_drift) for r in storage)))  # type: ignore
    missing = len(result_rows) - len(compared)
    if missing:
        lines.append("{} pairing{} not predicted (see the table)".format(missing, "" if missing == 1 else "s"))
    return lines


def make_dataset(folder: str, size: int, images: int, file_size: int, quality: int) -> str:
    """``edgescope-dataset imagefolder`` into ``folder``/``size``px: JPEGs of ``file_size`` (0: ``size``) px."""
    out = os.path.join(folder, "{}px".format(size))
    subprocess.run([sys.executable, "-m", "trainer.datasets_cli", "imagefolder", "--out", out, "--images",
                    str(images), "--image-size", str(file_size or size), "--quality", str(quality)], cwd=REPO,
                   env=child_env(), check=True, stdout=subprocess.DEVNULL)
    return out


def child_env() -> Dict[str, str]:
    return dict(os.environ, PYTHONPATH=REPO, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")


@contextlib.contextmanager
def cold_disk(config: Config, data_dir: str, args: argparse.Namespace, work: str,
              group: Optional[str]) -> Iterator[Tuple[str, Optional[Callable[[], None]]]]:
    """Where a cold run reads ``data_dir`` at ``config.storage`` bytes/s, and how its trainer gets there: a FUSE
    view mounted for the run (``--disk fuse``), or the folder itself read from inside ``group``'s throttle."""
    if args.disk == "fuse":
        with slowdisk.mounted(data_dir, os.path.join(work, "slow"), config.storage) as view:
            yield view, None
    else:
        blkio.set_read_bps(group, data_dir, config.storage)  # type: ignore[arg-type]
        yield data_dir, blkio.joiner(group)  # type: ignore[arg-type]


def train(config: Config, data_dir: str, args: argparse.Namespace, rates: Sequence[int], work: str,
          group: Optional[str], repeat: int = 0) -> List[Dict[str, Any]]:
    """One real trainer run (cold: every epoch evicted, read from the slow disk); its per-epoch records, [] if
    it failed (the log's path is printed)."""
    run_id = "whatif-{}px-w{}-{}-r{}".format(config.size, config.workers, config.storage or "cached", repeat)
    results, log = os.path.join(work, run_id + ".jsonl"), os.path.join(work, run_id + ".log")
    if os.path.exists(results):  # the trainer appends: a --work used before holds an older run's epochs
        os.remove(results)
    cmd = [sys.executable, "-m", "trainer.cli", "--model", "mobilenet_v3_small", "--dataset", "imagefolder",
           "--image-size", str(config.size), "--batch-size", str(args.batch_size),
           "--workers", str(config.workers), "--epochs", str(args.epochs), "--max-batches",
           str(args.batches[config.size]), "--device", "cpu", "--metrics-port", "-1", "--linger", "0",
           "--results", results, "--run-id", run_id]
    with contextlib.ExitStack() as stack:
        enter = None
        if config.storage != CACHED:
            data_dir, enter = stack.enter_context(cold_disk(config, data_dir, args, work, group))
            cmd += ["--evict-dataset"] + [flag for rate in rates for flag in ("--what-if-storage-bps", str(rate))]
        else:
            warm(data_dir)
        with open(log, "w") as out:
            done = subprocess.run(cmd + ["--data-dir", data_dir], cwd=REPO, env=child_env(), stdout=out,
                                  stderr=subprocess.STDOUT, preexec_fn=enter)
    if done.returncode != 0 or not os.path.exists(results):
        print("  {}: the trainer exited {}; see {}".format(label(config), done.returncode, log), flush=True)
        return []
    with open(results) as f:
        return [json.loads(line) for line in f if line.strip()]


def measure(configs: Sequence[Config], datasets: Dict[int, str], args: argparse.Namespace, rates: Sequence[int],
            work: str, group: Optional[str]) -> Iterator[Tuple[Config, List[Dict[str, Any]]]]:
    """Each configuration's runs, the whole grid ``args.repeats`` times over (interleaved, so that every
    configuration is measured early and late), with a progress line."""
    started = time.monotonic()
    total = len(configs) * args.repeats
    for repeat in range(args.repeats):
        for i, config in enumerate(configs):
            records = train(config, datasets[config.size], args, rates, work, group, repeat)
            durations = [r["duration_s"] for r in kept(records)]
            print("  [{}/{}, {:.0f} s] {}: epochs {}".format(
                repeat * len(configs) + i + 1, total, time.monotonic() - started, label(config),
                " ".join("{:.2f}".format(d) for d in durations) or "-"), flush=True)
            yield config, records


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="whatif_accuracy.json", help="every epoch's record, the rows and the load")
    p.add_argument("--sizes", default=None,
                   help="image sizes with the batches per epoch for each, SIZE:BATCHES,... (the dataset holds "
                        "exactly one epoch's images: cold epochs read all of it); default 64:40,224:20, "
                        "--quick 64:6,224:3")
    p.add_argument("--workers", default="1,2,4", help="DataLoader workers, comma-separated")
    p.add_argument("--batch-size", type=int, default=None, help="default 16, --quick 8")
    p.add_argument("--epochs", type=int, default=None, help="per run; epoch 0 is dropped (default 5, --quick 3)")
    p.add_argument("--rates", default="{},{}".format(4 * MIB, 8 * MIB),
                   help="cold read rates in bytes/s: the first for every workers setting, the others for "
                        "--storage-workers only")
    p.add_argument("--storage-workers", type=int, default=1, help="workers for the runs at the other rates")
    p.add_argument("--file-size", type=int, default=0,
                   help="generate the JPEGs at this side for every size, cropped to the size (0: the size itself); "
                        "larger files make the cold runs storage-bound")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of the generated files")
    p.add_argument("--work", default=None, help="datasets, logs, loop disk (default: a temporary folder)")
    p.add_argument("--disk", choices=("fuse", "throttle"), default="fuse",
                   help="the cold runs' slow disk: fuse (bench/slowdisk.py: every read takes size / rate, as on a "
                        "card) or throttle (cgroup v1 blkio on a loop disk: holds back only reads beyond its "
                        "average rate)")
    p.add_argument("--repeats", type=int, default=1,
                   help="measure the whole grid this many times over, interleaved: a configuration's epochs pool "
                        "over its repeats, so its spread holds the machine's drift from run to run")
    p.add_argument("--quick", action="store_true", help="tiny defaults for a smoke run (~3-4 min)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be 1 or more")
    defaults = ("64:6,224:3", 8, 3) if args.quick else ("64:40,224:20", 16, 5)
    args.sizes, args.batch_size, args.epochs = (given if given is not None else default for given, default in zip(
        (args.sizes, args.batch_size, args.epochs), defaults))
    args.batches = {int(s): int(b) for s, b in (item.split(":") for item in args.sizes.split(","))}
    args.workers = [int(w) for w in args.workers.split(",")]
    args.rates = [int(r) for r in args.rates.split(",")]
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    # SIGTERM ends the bench as Ctrl-C does: the throttled disk is unmounted and its cgroup removed on the way out
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    load_before = os.getloadavg()
    print("load average before: {:.2f} {:.2f} {:.2f} ({} CPUs)".format(*load_before, os.cpu_count()), flush=True)
    why_not = slowdisk.unavailable() if args.disk == "fuse" else blkio.unavailable()
    if why_not:
        print("cached half only: the cold half {}".format(why_not), flush=True)
    configs = plan(sorted(args.batches), args.workers, args.rates, args.storage_workers, why_not is None)
    work = args.work or tempfile.mkdtemp(prefix="whatif-")
    os.makedirs(work, exist_ok=True)
    datasets = {size: make_dataset(work, size, batches * args.batch_size, args.file_size, args.quality)
                for size, batches in args.batches.items()}
    epoch_bytes = {size: float(dataset_size(folder)) for size, folder in datasets.items()}
    sizes = ["{} px: {} batches, {:.1f} MB of {} px JPEGs (quality {})".format(
        s, b, dataset_size(datasets[s]) / 1e6, args.file_size or s, args.quality)
        for s, b in sorted(args.batches.items())]
    print("{} runs of {} epochs, batch {}; {}; logs in {}".format(len(configs) * args.repeats, args.epochs,
                                                                 args.batch_size, ", ".join(sizes), work), flush=True)
    runs = {}  # type: Dict[Config, List[Dict[str, Any]]]
    with contextlib.ExitStack() as stack:
        group = None
        if why_not is None and args.disk == "throttle":
            total = sum(dataset_size(d) for d in datasets.values())
            disk = stack.enter_context(blkio.loop_disk(work, max(64 * MIB, 2 * total + 32 * MIB)))
            for size, folder in list(datasets.items()):
                datasets[size] = shutil.copytree(folder, os.path.join(disk, os.path.basename(folder)))
            os.sync()
            group = stack.enter_context(blkio.throttled_group(disk, args.rates[0], "edgescope-bench"))
        for config, records in measure(configs, datasets, args, args.rates, work, group):
            runs.setdefault(config, []).extend(records)  # a configuration's epochs pool over its repeats
    result_rows = rows(runs, epoch_bytes)
    print()
    print(table(result_rows))
    print()
    for line in summary(result_rows):
        print(line)
    load_after = os.getloadavg()
    print("load average after: {:.2f} {:.2f} {:.2f} (the targets are for a quiet machine)".format(*load_after))
    record = {"load_before": load_before, "load_after": load_after, "argv": sys.argv[1:] if argv is None else argv,
              "dataset_bytes": epoch_bytes,
              "runs": [{"config": c._asdict(), "label": label(c), "records": r} for c, r in runs.items()],
              "rows": [{"measured": label(r.target), "predicted_from": label(r.source), "what_if": r.what_if,
                        "comparison": r.comparison._asdict() if r.comparison else None, "why": r.why,
                        "storage_drift": r.storage_drift} for r in result_rows]}
    try:  # atomic: an earlier --out stays whole whatever happens half-way
        atomicfile.write_bytes(args.out, json.dumps(record, indent=1).encode("utf-8"))
    except OSError as e:
        print("whatif_accuracy: cannot write the records to --out {}: {} (the table above stands; give --out a "
              "folder with room)".format(args.out, e.strerror), file=sys.stderr)
        return 1
    print("records: {}".format(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
