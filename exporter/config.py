"""Settings from a YAML file (--config) and flags, named like Prometheus exporters' flags.

Every setting has one name, used both as the flag (`--interval 1`) and as the
YAML key (`interval: 1`); flags override the file. A bad value or an unknown
key raises ConfigError with one line that names the file and key (or flag)
and says what is expected.
"""
import argparse
import math
import os
import re
from typing import Any, Callable, Dict, List, NamedTuple, Optional

from exporter.arguments import docs_epilog
from exporter.pagecache import METHODS as PAGECACHE_METHODS
from exporter.sources.diskstats import DEFAULT_EXCLUDE
from exporter.sources.jtop import JTOP_SOCKET
from exporter.yamlfile import one_line, read_mapping

POWER_SOURCES = ("auto", "jtop", "tegrastats", "nvml", "rapl", "none")
LOG_LEVELS = ("debug", "info", "warn", "error")


class ConfigError(Exception):
    """A one-line, user-facing configuration problem."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def _seconds(minimum: float, maximum: float) -> Callable[[Any], float]:
    """A parser of seconds in [minimum, maximum]: inf, nan and absurd values are refused here,
    not discovered when a sampling thread's wait() overflows."""
    def parse(v: Any) -> float:
        try:
            f = float(v)
        except (TypeError, ValueError, OverflowError):
            f = -1.0
        if isinstance(v, bool) or not 0 < f < math.inf:
            raise ValueError("must be a positive number of seconds, got {!r}".format(v))
        if not minimum <= f <= maximum:
            raise ValueError("must be between {:g} and {:g} seconds, got {!r}".format(minimum, maximum, v))
        return f
    return parse


def _non_negative(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        f = -1.0
    if isinstance(v, bool) or not 0 <= f < math.inf:
        raise ValueError("must be a finite number >= 0, got {!r}".format(v))
    return f


def _error_bound(v: Any) -> float:
    f = _non_negative(v)
    if not f < 1:
        raise ValueError("must be a ratio >= 0 and < 1 (0 = measure every file), got {!r}".format(v))
    return f


def _choice(options):
    def parse(v: Any) -> str:
        if v not in options:
            raise ValueError("must be one of {}, got {!r}".format(", ".join(options), v))
        return v
    return parse


def _existing_file(v: Any) -> str:
    if not isinstance(v, str) or not os.path.isfile(v):
        raise ValueError("file {!r} does not exist".format(v))
    return v


def _existing_dir(v: Any) -> str:
    if not isinstance(v, str) or not os.path.isdir(v):
        raise ValueError("directory {!r} does not exist".format(v))
    return v


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError("must be a non-empty string, got {!r}".format(v))
    return v


def _regex(v: Any) -> str:
    try:
        re.compile(_text(v))
    except re.error as e:
        raise ValueError("is not a valid regular expression ({}): {!r}".format(e, v))
    return v


def parse_listen_address(v: Any) -> str:
    """'host:port', ':port' or '[v6]:port'."""
    host, sep, port = v.rpartition(":") if isinstance(v, str) else ("", "", "")
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) < 65536:
        raise ValueError("must be HOST:PORT or :PORT (e.g. :9945), got {!r}".format(v))
    return v


def _datasets(v: Any) -> List[str]:
    paths = [v] if isinstance(v, str) else v
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise ValueError("must be a path or a list of paths, got {!r}".format(v))
    for p in paths:
        if not os.path.exists(p):
            raise ValueError("dataset path {!r} does not exist".format(p))
    return paths


class Setting(NamedTuple):
    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str


SETTINGS = [
    Setting("web.listen-address", parse_listen_address, ":9945", "Address to serve /metrics on."),
    Setting("web.config.file", _existing_file, None,
            "Prometheus web-config.yml: tls_server_config (cert_file, key_file, client_ca_file, client_auth_type) and basic_auth_users (bcrypt hashes)."),
    Setting("interval", _seconds(0.01, 3600), 1.0, "Sampling interval in seconds (monotonic clock)."),
    Setting("power-source", _choice(POWER_SOURCES), "auto", "Where power comes from: " + ", ".join(POWER_SOURCES) + "."),
    Setting("tegrastats-file", _existing_file, None, "With --power-source tegrastats or auto: replay this recorded tegrastats log (one line per interval, looping) instead of running tegrastats."),
    Setting("jtop-socket", _text, JTOP_SOCKET, "jtop.service socket."),
    Setting("dataset", _datasets, [], "File or directory whose page-cache residency to report (repeatable)."),
    Setting("pagecache-interval", _seconds(0.01, 86400), 30.0, "Seconds between page-cache scans of the datasets."),
    Setting("pagecache-method", _choice(PAGECACHE_METHODS), "auto",
            "How resident pages are read: cachestat (Linux >= 6.5), mincore, or auto (cachestat where the kernel has it)."),
    Setting("pagecache-max-error", _error_bound, 0.03,
            "A dataset with more files than this needs is measured on page-weighted random files, within this "
            "error of the true ratio with 99%% probability; 0 = measure every file."),
    Setting("pagecache-cpu-budget", _non_negative, 0.01,
            "CPU seconds per wall second the page-cache thread may use (a larger dataset is listed less often); 0 = no limit."),
    Setting("sysfs-root", _existing_dir, "/sys", "Root of sysfs (thermal, cpufreq, devfreq, hwmon, powercap)."),
    Setting("procfs-root", _existing_dir, "/proc", "Root of procfs (diskstats, meminfo)."),
    Setting("disk-exclude", _regex, DEFAULT_EXCLUDE, "Regex of block devices to leave out (partitions, loop, ram)."),
    Setting("source-timeout", _seconds(0.01, 3600), 5.0, "A source sampling longer than this is reported down as hung."),
    Setting("log.level", _choice(LOG_LEVELS), "info", "Log level: " + ", ".join(LOG_LEVELS) + "."),
]
BY_NAME = {s.name: s for s in SETTINGS}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        raise ConfigError(message)


def _arg_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="edgescope-exporter", description="edgescope exporter: power, energy, thermals, disk and page cache on /metrics.",
                epilog=docs_epilog("exporter.md"))
    p.add_argument("--config", help="YAML file with any of the settings below, keyed by flag name without dashes.")
    for s in SETTINGS:
        default = "" if s.default in (None, []) else " (default: {})".format(s.default)
        p.add_argument("--" + s.name, dest=s.name, action="append" if s.name == "dataset" else "store",
                       default=None, metavar="VALUE", help=s.help + default)
    return p


def _validate(name: str, value: Any, where: str) -> Any:
    try:
        return BY_NAME[name].parse(value)
    except ValueError as e:
        raise ConfigError("{}: {}".format(where, e))


def load(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Settings dict keyed by setting name; raises ConfigError on any problem."""
    args = vars(_arg_parser().parse_args(argv))
    settings = {s.name: s.default for s in SETTINGS}
    path = args.pop("config")
    if path is not None:
        data = read_mapping(path, "--config", ConfigError)
        for key, value in data.items():
            if key not in BY_NAME:
                raise ConfigError("{}: unknown key {!r} (known: {})".format(path, key, ", ".join(BY_NAME)))
            settings[key] = _validate(key, value, "{}: key {!r}".format(path, key))
    for name, value in args.items():
        if value is not None:
            settings[name] = _validate(name, value, "--" + name)
    if settings["tegrastats-file"] and settings["power-source"] not in ("auto", "tegrastats"):
        raise ConfigError("--tegrastats-file needs --power-source tegrastats (or auto), not {}".format(settings["power-source"]))
    return settings
