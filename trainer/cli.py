"""edgescope-train: the reference experiment, instrumented per batch.

Defaults reproduce it: VGG11 on CIFAR-10, batch 16, 4 workers, prefetch 2,
SGD lr 0.01 momentum 0.9, cross-entropy, 6 epochs; results are averaged over
epochs 1..N-1 (epoch 0 warms up).
"""
import argparse
import contextlib
import datetime
import math
import os
import re
import secrets
import socket
import sys
import time
import warnings
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

from exporter.arguments import docs_epilog, int_at_least, number_in, utf8_argument
from exporter.atomicfile import cannot_write
from exporter.config import POWER_SOURCES
from exporter.config import SETTINGS as EXPORTER_SETTINGS
from exporter.yamlfile import one_line
from trainer import checkpoint, flags
from trainer.data import (DATASETS, SyntheticBatches, build_dataset, count_io_from_now, dataset_identity, make_loader,
                          probe_after_wait)
from trainer.energy import (SAMPLE_INTERVAL_S, EnergyUnavailable, ExporterEnergy, InProcessEnergy, Reading,
                            epoch_energy, first_reading, metrics_url, try_read)
from trainer.errors import OneLineParser, UsageError
from trainer.loop import Job, StopRequest, train_epoch
from trainer.meter import TIMING_MODES, BatchTiming, StepMeter, Window
from trainer.labels import label_argument_problem
from trainer.metrics import TrainMetrics, load_web, start_server
from trainer.mode import current_mode
from trainer.models import MODELS, build_model
from trainer.pagecache import dataset_size, evict
from trainer.progress import EpochProgress
from trainer.results import (append_result, complete_results, epoch_record, print_epoch, print_summary,
                             window_of)
from trainer.timeline import (MAX_PREFETCH_FACTOR, MAX_WORKERS, Prediction, per_sample, window_what_ifs,
                              write_timeline)
from trainer.safe_load import describe

_non_negative_float = number_in(0, math.inf)


_positive_float = number_in(0, math.inf, above=True)


def _label(text: str) -> Any:
    problem = label_argument_problem(utf8_argument(text))
    if problem:
        raise argparse.ArgumentTypeError(problem)
    key, _, value = text.partition("=")
    return key, value


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = OneLineParser(prog="edgescope-train", description=__doc__, epilog=docs_epilog("training.md"),
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(MODELS), default="vgg11")
    p.add_argument("--dataset", choices=DATASETS, default="cifar10")
    p.add_argument("--data-dir", default="data",
                   help="cifar10: the folder holding cifar-10-batches-py/; imagefolder: the class folders' parent")
    p.add_argument("--download", action="store_true", help="download the official CIFAR-10 (opt-in)")
    p.add_argument("--image-size", type=flags.IMAGE_SIZE, default=224, help="imagefolder crop size in pixels")
    p.add_argument("--batch-size", type=int_at_least(1), default=16)
    # bounded as a timeline file's counts are: torch queues prefetch factor x workers indices before the first
    # batch (10^9 spun for minutes), and each worker is a process
    p.add_argument("--workers", type=number_in(0, MAX_WORKERS, int), default=4, help="DataLoader worker processes")
    p.add_argument("--prefetch-factor", type=number_in(1, MAX_PREFETCH_FACTOR, int), default=2,
                   help="batches loaded ahead per worker")
    p.add_argument("--pin-memory", action="store_true")
    p.add_argument("--device", type=_device_choice, default="auto",
                   help="auto (CUDA if torch sees it), cuda, cuda:N or cpu")
    p.add_argument("--epochs", type=int_at_least(1), default=6)
    p.add_argument("--max-batches", type=int_at_least(1), default=None, help="cap on batches per epoch")
    p.add_argument("--lr", type=flags.LEARNING_RATE, default=0.01)
    p.add_argument("--momentum", type=flags.MOMENTUM, default=0.9)
    p.add_argument("--seed", type=flags.SEED, default=0)
    p.add_argument("--run-id", type=utf8_argument, default=None, help="default: generated from the time")
    p.add_argument("--device-name", type=utf8_argument, default=socket.gethostname(), help="default: the hostname")
    p.add_argument("--label", type=_label, action="append", default=[], metavar="KEY=VALUE",
                   help="extra run_info label (e.g. power_mode=MAXN, storage_path=/mnt/sd); repeatable, each key once")
    p.add_argument("--timing", choices=TIMING_MODES, default="lazy",
                   help="lazy: CUDA events read once done (default); sync: torch.cuda.synchronize() "
                        "every batch; none: no per-batch timing")
    p.add_argument("--metrics-port", type=int_at_least(-1), default=9946,
                   help="Prometheus endpoint port; 0 picks a free one, -1 serves none")
    p.add_argument("--metrics-addr", default="0.0.0.0", help="address to serve on (127.0.0.1: this host only)")
    p.add_argument("--web.config.file", dest="web_config_file", default=None,
                   help="TLS and basic auth for the endpoint, in the exporter's web-config.yml format")
    p.add_argument("--metrics-textfile", default=None,
                   help="also write the exposition here at the start, at each epoch end and at the end")
    p.add_argument("--linger", type=_non_negative_float, default=30.0,
                   help="seconds to keep serving after the last epoch, so the last scrape sees it")
    p.add_argument("--results", default=None, help="append one JSON object per epoch to this file")
    p.add_argument("--log-interval", type=int_at_least(1), default=100,
                   help="print the mean loss of the last N steps every N steps (read from the device only then)")
    p.add_argument("--verbose", action="store_true",
                   help="each epoch's line and the summary with every time (the stall split, host overhead, the "
                        "loader's start-up and shutdown, the workers' own read and preprocess time; all are in "
                        "--results)")
    p.add_argument("--checkpoint-dir", default=None, help="save a checkpoint at every epoch end")
    energy = p.add_mutually_exclusive_group()
    energy.add_argument("--exporter-url", default=None, metavar="URL",
                        help="read the board exporter's energy counter here at each epoch's start and end "
                             "(e.g. http://127.0.0.1:9945/metrics; https and user:pass@ work)")
    energy.add_argument("--power-source", choices=POWER_SOURCES, default=None,
                        help="no exporter: sample this power source in-process (the exporter's sources)")
    p.add_argument("--exporter-ca-file", default=None, help="CA certificate that signed an https exporter's")
    p.add_argument("--tegrastats-file", default=None,
                   help="with --power-source tegrastats (or auto): replay this log instead of running tegrastats")
    p.add_argument("--power-interval", type=flags.POWER_INTERVAL, default=SAMPLE_INTERVAL_S, metavar="SECONDS",
                   help="with --power-source: sample power this often, and run tegrastats / jtop at it (0.1: "
                        "tegrastats --interval 100); a line source's epoch energy bound is its power x this at "
                        "each edge")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir's checkpoint")
    p.add_argument("--evict-dataset", action="store_true",
                   help="before every epoch (outside its timing and energy) drop --data-dir's files from the page "
                        "cache (fdatasync + posix_fadvise, no root): every epoch reads from storage")
    p.add_argument("--timeline-dir", default=None,
                   help="write each epoch's loader timeline to DIR/RUN_ID/epoch-N.json "
                        "(edgescope-report --timeline draws it)")
    p.add_argument("--what-if-storage-bps", type=_positive_float, action="append", default=[], metavar="BYTES_PER_S",
                   help="also replay each epoch with storage of this read rate (repeatable; e.g. 20e6 for an SD card)")
    p.add_argument("--what-if-compute-speedup", type=_positive_float, action="append", default=None, metavar="K",
                   help="also replay each epoch with steps K times faster, e.g. a faster board (repeatable; default 2)")
    p.add_argument("--synthetic-input", action="store_true",
                   help="train on one random batch made once on the device (the dataset's shape, batch count and "
                        "classes), no loader: the epoch is the model's compute alone (DS-Analyzer's synthetic pass)")
    args = p.parse_args(argv)
    twice = sorted({key for key, _ in args.label if sum(k == key for k, _ in args.label) > 1})
    if twice:
        p.error("argument --label: {} given more than once ({}); give each label once".format(
            ", ".join(twice), ", ".join("{}={}".format(k, v) for k, v in args.label if k in twice)))
    if args.metrics_port > 65535:
        p.error("argument --metrics-port: {} is not a TCP port".format(args.metrics_port))
    if args.download and args.dataset != "cifar10":
        p.error("--download fetches CIFAR-10 only; drop it for --dataset {}".format(args.dataset))
    if args.run_id is not None and not args.run_id.strip():
        p.error("argument --run-id: {!r} is empty; give a name, or drop the flag for one generated from the time"
                .format(args.run_id))
    if args.resume and not args.checkpoint_dir:
        p.error("--resume needs --checkpoint-dir DIR")
    if args.checkpoint_dir and os.path.exists(args.checkpoint_dir) and not os.path.isdir(args.checkpoint_dir):
        p.error("--checkpoint-dir {} is a file, not a folder; pass a folder".format(args.checkpoint_dir))
    if args.exporter_url and not re.match(r"^https?://[^/]", args.exporter_url):
        p.error("--exporter-url {!r} must be an http:// or https:// URL, e.g. http://127.0.0.1:9945/metrics"
                .format(args.exporter_url))
    for flag, value in (("--exporter-ca-file", args.exporter_ca_file), ("--tegrastats-file", args.tegrastats_file)):
        if value is not None and not os.path.isfile(value):
            p.error("{}: no file {}".format(flag, value))
    if args.exporter_ca_file and not args.exporter_url:
        p.error("--exporter-ca-file goes with --exporter-url")
    if args.what_if_compute_speedup is None:
        args.what_if_compute_speedup = [2.0]
    if args.synthetic_input and args.evict_dataset:
        p.error("--synthetic-input reads no dataset: drop --evict-dataset")
    if args.power_interval != SAMPLE_INTERVAL_S and args.power_source in (None, "none"):
        p.error("--power-interval goes with --power-source (the exporter samples at its own --interval)")
    if args.tegrastats_file and args.power_source not in ("tegrastats", "auto"):
        p.error("--tegrastats-file goes with --power-source tegrastats")
    return args


def _device_choice(text: str) -> str:
    if not re.match(r"^(auto|cpu|cuda(:\d+)?)\Z", text):
        raise argparse.ArgumentTypeError("{!r} is not auto, cpu, cuda or cuda:N".format(text))
    return text


def _resolve_device(choice: str) -> torch.device:
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device {} but torch sees no CUDA device; use --device cpu "
                         "(on a Jetson, keep JetPack's CUDA torch: see docs/jetson.md)".format(choice))
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(choice)
    if device.index is not None:
        if device.index >= torch.cuda.device_count():
            raise UsageError("--device {}: torch sees {} CUDA device(s), numbered from 0".format(
                choice, torch.cuda.device_count()))
        torch.cuda.set_device(device)  # kernels, events and current_stream() all on the run's device
    return device


def _energy_meter(args: argparse.Namespace) -> Any:
    """Where the epochs' energy comes from: the exporter, an in-process power source, or nowhere (None)."""
    if args.exporter_url:
        return ExporterEnergy(args.exporter_url, args.exporter_ca_file)
    if args.power_source in (None, "none"):
        return None
    settings = {s.name: s.default for s in EXPORTER_SETTINGS}
    settings.update({"power-source": args.power_source, "tegrastats-file": args.tegrastats_file,
                     "interval": args.power_interval})
    try:
        return InProcessEnergy(settings, args.power_interval)
    except EnergyUnavailable as error:
        if args.power_source != "auto":
            raise UsageError("--power-source {}: {}; pick another source or drop the flag".format(
                args.power_source, error))
        print("edgescope-train: --power-source auto found no power source ({}); epochs get no energy"
              .format(error), file=sys.stderr, flush=True)
        return None


def _evict(data_dir: str) -> None:
    try:
        evict(data_dir)
    except OSError as error:
        raise UsageError("--evict-dataset: cannot drop {} from the page cache ({}); drop the flag or make the "
                         "files readable".format(error.filename or data_dir, error.strerror or error))


def _make_directory(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise UsageError("cannot create --checkpoint-dir {}: {}; pick a writable folder".format(
            path, error.strerror or error))


def usable_cores() -> Optional[int]:
    """The CPU cores this process may run on (its affinity, as torch counts them), None where unknown."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def workers_note(workers: int) -> Optional[str]:
    """torch's "This DataLoader will create N worker processes" warning as one line that says what it means for
    the measurement; None where the workers have a core each."""
    cores = usable_cores()
    if not workers or cores is None or workers <= cores:
        return None
    return ("edgescope-train: note: {} loader workers and the training steps share the {} CPU core{} this process "
            "may use: stall and compute include waiting for a core (this machine's figures with {} workers)".format(
                workers, cores, "" if cores == 1 else "s", workers))


def new_run_id() -> str:
    """A run id from the time, with 4 random hex digits: two runs started in the same second differ."""
    return "{}-{}".format(datetime.datetime.now().strftime("%Y%m%dT%H%M%S"), secrets.token_hex(2))


def run(args: argparse.Namespace, stop: StopRequest) -> int:
    device = _resolve_device(args.device)
    web = load_web(args.web_config_file)  # before the data: a bad file fails at once
    torch.manual_seed(args.seed)
    dataset = build_dataset(args.dataset, args.data_dir, args.download, args.image_size)
    if args.synthetic_input:
        loader = SyntheticBatches(dataset, args.batch_size, device, args.seed)  # type: Any
    else:
        note = workers_note(args.workers)
        if note:  # instead of torch's warning, made with the loader and at every epoch's start
            warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
            print(note, file=sys.stderr, flush=True)
        loader = make_loader(dataset, args.batch_size, args.workers, args.prefetch_factor, args.pin_memory,
                             args.seed, timed=args.timing != "none")
    model = build_model(args.model, num_classes=len(dataset.classes)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    job = Job(model, optimizer, nn.CrossEntropyLoss(), loader, device)

    labels = dict(args.label)
    # settings that change an epoch's work where they apply: each a configuration of its own in every comparison
    if args.synthetic_input:
        labels["input"] = "synthetic"
    if args.dataset == "imagefolder":
        labels["image_size"] = str(args.image_size)
    if args.max_batches is not None and args.max_batches < len(loader):
        labels["max_batches"] = str(args.max_batches)
    settings = {"model": args.model, "dataset": args.dataset, "dataset_samples": str(len(dataset)),
                "dataset_id": dataset_identity(dataset, args.data_dir),
                "batch_size": str(args.batch_size),
                "workers": str(args.workers), "prefetch_factor": str(args.prefetch_factor),
                "pin_memory": str(args.pin_memory).lower(), "timing": args.timing,
                "torch_device": device.type, "device_name": args.device_name}
    settings.update(labels)

    history = []  # type: List[Dict[str, Any]]
    start_epoch = 0
    run_id = args.run_id
    if args.resume:
        state = checkpoint.load(args.checkpoint_dir, device)
        run_id = checkpoint.resumed_run_id(state, args.run_id, args.checkpoint_dir)
        checkpoint.check_settings(state.get("settings"), settings, args.checkpoint_dir)
        checkpoint.restore(job, state, args.checkpoint_dir)
        history = state["history"]
        start_epoch = state["epoch"] + 1
        print("edgescope-train: resuming run {} (the checkpoint's run id) from {} after epoch {}".format(
            run_id, args.checkpoint_dir, state["epoch"]), flush=True)
    run_id = run_id or new_run_id()
    # the hardware of the power mode it trains in (trainer.mode): not a setting, a resumed run may train in another
    mode = current_mode().labels()
    metrics = TrainMetrics(run_id, context_labels=tuple(sorted(set(labels) | set(mode))))
    energy = _energy_meter(args)
    config = dict(settings, energy_source=energy.source if energy else "none", **mode)
    metrics.set_run_info(config)
    try:
        for record in history:  # restored by --resume: published again, in case Prometheus missed them
            metrics.record_epoch(record["epoch"], window_of(record), record["samples"],
                                 record["fetch_stall_s"] is not None, record.get("energy_joules"),
                                 record.get("average_power_watts"), record.get("predicted_duration_s"),
                                 record.get("energy_bound_joules"), record.get("predicted_compute_s"),
                                 bool(record.get("power_replayed")))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        if energy:
            energy.close()
        raise UsageError("--resume: the epoch history in {} is malformed ({}); delete it or point --checkpoint-dir "
                         "elsewhere".format(os.path.join(args.checkpoint_dir, checkpoint.CHECKPOINT_FILE), describe(error)))
    try:
        server = start_server(metrics.registry, args.metrics_port, args.metrics_addr, web)
    except UsageError:
        if energy:
            energy.close()
        raise
    measured = args.timing != "none"
    dataset_bytes = None if args.synthetic_input else dataset_size(args.data_dir)
    progress = EpochProgress()

    def observe(timing: BatchTiming) -> None:
        metrics.observe_batch(timing)
        progress.observe(timing)

    meter = StepMeter(device, args.timing, on_batch=observe)
    batches_per_epoch = len(loader) if args.max_batches is None else min(len(loader), args.max_batches)
    print("edgescope-train: run {} | {} on {} ({} images, {} batches/epoch) | device {} | timing {} | metrics {}"
          .format(run_id, args.model, args.dataset + (" (synthetic input)" if args.synthetic_input else ""),
                  len(dataset), batches_per_epoch, device, args.timing,
                  "{}://{}:{}/metrics".format(server.scheme, args.metrics_addr, server.port) if server else "not served"),
          flush=True)

    def finish() -> None:
        if args.metrics_textfile:
            metrics.write_textfile(args.metrics_textfile)

    metrics.running.set(1)
    try:
        finish()  # the run's configuration is visible at once, and a bad path fails now, not after an epoch
        added = complete_results(args.results, run_id, history)
        if added:
            print("edgescope-train: note: --results {} lacked epoch(s) {} of run {} (stopped after the checkpoint, "
                  "before the record); added from the checkpoint".format(
                      args.results, ", ".join(str(n) for n in added), run_id), file=sys.stderr, flush=True)
        if args.checkpoint_dir:
            _make_directory(args.checkpoint_dir)
            for stale in checkpoint.remove_stale(args.checkpoint_dir):
                print("edgescope-train: note: removed {}, a checkpoint a killed run left half-written".format(stale),
                      file=sys.stderr, flush=True)
    except UsageError:
        if server:
            server.close()
        if energy:
            energy.close()
        raise
    if energy:
        first = first_reading(energy, 0.0 if args.exporter_url else 5.0)
        where = energy.where
        if args.exporter_url and metrics_url(args.exporter_url) != args.exporter_url:
            where += " (--exporter-url has no path: the exporter's /metrics, as Prometheus scrapes it)"
        print("edgescope-train: energy from {}: {}".format(
            where, "counter at {:.1f} J{}".format(first.joules, ", a REPLAYED power log, not this board's power: "
                                                  "the report keeps it off the Pareto front" if first.replayed
                                                  else "") if isinstance(first, Reading)
            else "NOT readable now ({}); epochs without a reading at both edges get no energy".format(first)),
            flush=True)

    try:
        for epoch in range(start_epoch, args.epochs):
            metrics.epoch.set(epoch)
            loader.generator.manual_seed(args.seed * 100003 + epoch)  # the same order after --resume
            if args.evict_dataset:
                _evict(args.data_dir)
            energy_start = try_read(energy) if energy else ""
            count_io_from_now()
            progress.start(epoch, args.epochs, batches_per_epoch)
            window, batches, samples, loss = train_epoch(job, epoch, meter, metrics, batches_per_epoch,
                                                         args.log_interval, stop, progress)
            progress.close()
            used = epoch_energy(energy_start, try_read(energy), energy.broken) if energy else None
            complete = not stop.requested
            predictions = predict_epoch(window, args, dataset_bytes, dataset, samples, epoch, stop) if measured else {}
            record = epoch_record(run_id, epoch, complete, window, batches, samples, loss, measured, config, used,
                                  predictions)
            if args.timeline_dir and window.timeline is not None:
                try:
                    write_timeline(args.timeline_dir, run_id, epoch, window)
                except OSError as error:
                    raise UsageError(cannot_write("timeline", error.filename or args.timeline_dir, error,
                                                  "pick another --timeline-dir"))
            history.append(record)
            if complete and args.checkpoint_dir:  # first: --results never holds an epoch the checkpoint lacks
                checkpoint.save(args.checkpoint_dir, {"epoch": epoch, "run_id": run_id, "history": history,
                                                       "settings": settings, "model": job.model.state_dict(),
                                                       "optimizer": job.optimizer.state_dict()})
            append_result(args.results, record)
            print_epoch(record, args.epochs, args.verbose)
            if used and used.note:
                print("edgescope-train: epoch {}: {}".format(epoch, used.note), file=sys.stderr, flush=True)
            if not complete:
                break
            metrics.record_epoch(epoch, window, samples, measured, record["energy_joules"],
                                 record["average_power_watts"], record["predicted_duration_s"],
                                 record["energy_bound_joules"], record["predicted_compute_s"],
                                 record["power_replayed"])
            finish()
        metrics.running.set(0)
        finish()
        print_summary(history, args.verbose)
        if stop.requested:
            print("edgescope-train: stopped by signal {}; results and metrics written".format(stop.signum),
                  file=sys.stderr, flush=True)
            return 128 + stop.signum
        if server and args.linger > 0:
            print("edgescope-train: serving the final metrics for {:g} s more (--linger)".format(args.linger),
                  flush=True)
            deadline = time.monotonic() + args.linger
            while time.monotonic() < deadline and not stop.requested:
                time.sleep(0.1)
            if stop.requested:  # training is complete and written; the linger was cut short
                return 128 + stop.signum
        return 0
    finally:
        metrics.running.set(0)  # on every way out, a crash included: never left saying "training"
        # leaving on an error, that error is the one to report (a normal end wrote the textfile above)
        with contextlib.suppress(UsageError):
            finish()
        if server:
            server.close()
        if energy:
            energy.close()


def predict_epoch(window: Window, args: argparse.Namespace, dataset_bytes: Optional[int], dataset: Any,
                  samples: int, epoch: int, stop: StopRequest) -> Dict[str, Prediction]:
    """The epoch's what-ifs, replayed on its timeline (none for ``--synthetic-input``: it has no loader), once
    a few samples made back to back have told what its makings' CPU cost more after their waits for the device
    (trainer.afterwait: after the epoch's window, in no epoch's time)."""
    if args.synthetic_input:
        return {}
    if window.timeline is not None and not stop.requested:
        window.timeline.after_wait = probe_after_wait(dataset, *per_sample(window.timeline, samples),
                                                      seed=args.seed * 100003 + epoch,
                                                      stopped=lambda: stop.requested)
    return window_what_ifs(window, args.what_if_storage_bps, args.what_if_compute_speedup, dataset_bytes)


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = parse_args(argv)
        with StopRequest() as stop:
            return run(args, stop)
    except UsageError as error:
        print("edgescope-train: {}".format(one_line(str(error))), file=sys.stderr)  # a path may hold a newline
        return 2


if __name__ == "__main__":
    sys.exit(main())
