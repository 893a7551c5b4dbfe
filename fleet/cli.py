"""edgescope-fleet-sim: serve N simulated Jetsons on loopback ports, for tests and load.

Device i serves its exporter on BASE+2i and its trainer on BASE+2i+1 (with
--base-port 0 every endpoint takes a free port). --targets-file writes the
boards in the stack's file_sd format (prometheus/targets/*.yml, with
__exporter_port__ / __trainer_port__), so prometheus/prometheus.yml or a
Prometheus agent scrapes them as it would real boards.
"""
import argparse
import os
import resource
import signal
import sys
from typing import List, Optional

import yaml

import exporter
from exporter import atomicfile
from fleet.device import SimulatedDevice, load_trace, make_fleet
from fleet.serve import Endpoints, is_loopback
from exporter.arguments import docs_epilog, number_in
from exporter.yamlfile import one_line
from trainer.errors import OneLineParser, UsageError

MAX_DEVICES = 2000
DEFAULT_TRACE = os.path.join(os.path.dirname(exporter.__file__), "demo", "tegrastats_nano_warming.log")


DAY, YEAR = 86400.0, 365 * 86400.0


def parser() -> argparse.ArgumentParser:
    """Every numeric flag has its range here, so nan, inf or an out-of-range value is one line at start."""
    p = OneLineParser(prog="edgescope-fleet-sim", description=__doc__, epilog=docs_epilog("fleet.md"),
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=number_in(1, MAX_DEVICES, int), default=10,
                   help="number of boards, 1..{} (default %(default)s)".format(MAX_DEVICES))
    p.add_argument("--listen", default="127.0.0.1", metavar="HOST", help="loopback address to bind (default %(default)s)")
    p.add_argument("--base-port", type=number_in(0, 65535, int), default=19945, metavar="PORT",
                   help="first port; 0 = any free ports (default %(default)s)")
    p.add_argument("--targets-file", metavar="PATH", help="write the boards as file_sd targets here")
    p.add_argument("--trace", default=DEFAULT_TRACE, metavar="FILE",
                   help="tegrastats log to replay (default: the exporter's demo Jetson Nano log)")
    p.add_argument("--device-type", default="nano", help="device_type label of the boards (default %(default)s)")
    p.add_argument("--prefix", default="sim", help="device names are PREFIX-0000.. (default %(default)s)")
    p.add_argument("--seed", type=number_in(-2 ** 63, 2 ** 63, int), default=1,
                   help="seed of every board's phase and jitter (default %(default)s)")
    p.add_argument("--line-interval", type=number_in(0, 3600, above=True), default=1.0, metavar="S",
                   help="tegrastats interval, up to 3600 (default 1)")
    p.add_argument("--jitter", type=number_in(0, 1800), default=0.05, metavar="S",
                   help="each tegrastats line arrives up to this much early or late (default %(default)s)")
    p.add_argument("--epochs", type=number_in(1, 1000000, int), default=6, help="epochs per run (default %(default)s)")
    p.add_argument("--epoch-seconds", type=number_in(0, DAY, above=True), default=60.0, metavar="S",
                   help="about this long per epoch, up to a day")
    p.add_argument("--batch-seconds", type=number_in(0.001, 3600), default=0.25, metavar="S",
                   help="mean batch time, 0.001..3600 (every batch is played: shorter ones cost CPU) (default %(default)s)")
    p.add_argument("--linger", type=number_in(0, DAY), default=30.0, metavar="S",
                   help="pause between runs, up to a day (default %(default)s)")
    p.add_argument("--duration", type=number_in(0, YEAR), default=0.0, metavar="S",
                   help="stop after S seconds, up to a year (0 = on SIGTERM/SIGINT)")
    return p


def validate(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What one flag's range cannot say: loopback only, ports for every device, jitter against the interval."""
    if not is_loopback(args.listen):
        p.error("--listen {}: the simulator serves loopback only (127.0.0.1 or ::1)".format(args.listen))
    last = args.base_port + 2 * args.devices - 1
    if args.base_port and last > 65535:
        p.error("--base-port {}: {} devices need ports up to {} (> 65535); lower it or use 0".format(
            args.base_port, args.devices, last))
    if args.jitter >= args.line_interval / 2:
        p.error("--jitter must be below half of --line-interval")
    if args.batch_seconds > args.epoch_seconds:
        p.error("--batch-seconds must be at most --epoch-seconds")


def targets(devices: List[SimulatedDevice], host: str, ports: List[int]) -> list:
    """file_sd entries, one per board, in the format of prometheus/targets/*.yml."""
    return [{"targets": [host], "labels": dict(d.labels, __exporter_port__=str(ports[2 * i]),
                                                 __trainer_port__=str(ports[2 * i + 1]))}
            for i, d in enumerate(devices)]


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard == resource.RLIM_INFINITY else min(hard, max(needed, soft)), hard))


def fail(message: str) -> int:
    """The one line an error exit prints (a path or a value may hold a newline), and its status."""
    print("edgescope-fleet-sim: " + one_line(message), file=sys.stderr)
    return 2


def main(argv: Optional[List[str]] = None) -> int:
    p = parser()
    try:
        args = p.parse_args(argv)
        validate(p, args)
    except UsageError as e:
        return fail("error: {}".format(e))
    try:
        trace = load_trace(args.trace)
    except (OSError, ValueError) as e:
        return fail("--trace {}: {}".format(args.trace, getattr(e, "strerror", None) or e))
    devices = make_fleet(args.devices, trace, args.device_type, args.seed, args.prefix,
                         line_interval=args.line_interval, jitter=args.jitter, epochs=args.epochs,
                         epoch_seconds=args.epoch_seconds, batch_seconds=args.batch_seconds, linger_s=args.linger)
    raise_fd_limit(4 * args.devices + 64)  # a listening socket and a scrape connection per endpoint
    ports = [0] * (2 * args.devices) if args.base_port == 0 else list(range(args.base_port, args.base_port + 2 * args.devices))
    renders = []
    for d in devices:
        renders += [lambda d=d: d.render("exporter"), lambda d=d: d.render("trainer")]
    try:
        endpoints = Endpoints(args.listen, ports, renders)
    except OSError as e:
        return fail("{}; choose another --base-port (or 0)".format(e.strerror or e))
    try:
        if args.targets_file:  # Prometheus re-reads file_sd files on change: never let it see half a file
            atomicfile.write_bytes(args.targets_file, yaml.safe_dump(
                targets(devices, args.listen, endpoints.ports), sort_keys=False).encode("utf-8"))
    except OSError as e:
        endpoints.close()
        return fail(atomicfile.cannot_write("--targets-file", args.targets_file, e, "pick another --targets-file"))
    try:
        stop = endpoints.loop.create_future()

        def finish() -> None:
            if not stop.done():
                stop.set_result(None)

        for sig in (signal.SIGTERM, signal.SIGINT):
            endpoints.loop.add_signal_handler(sig, finish)
        if args.duration:
            endpoints.loop.call_later(args.duration, finish)
        print("edgescope-fleet-sim: serving {} devices on {} (first exporter :{}, trainer :{}){}".format(
            args.devices, args.listen, endpoints.ports[0], endpoints.ports[1],
            "; targets in " + args.targets_file if args.targets_file else ""), file=sys.stderr, flush=True)
        endpoints.run(stop)
    finally:
        endpoints.close()
    scrapes = sum(d.scrapes["exporter"] + d.scrapes["trainer"] for d in devices)
    print("edgescope-fleet-sim: stopped after {} scrapes".format(scrapes), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
