"""The sweep plan: a YAML file, checked completely before anything runs.

An unknown key or an impossible value is a PlanError whose message names the
file and the key (``plan.yaml: sweep.batch_size[1]: ...``).
"""
import hashlib
import itertools
import re
import socket
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

from exporter.yamlfile import one_line, read_mapping
from trainer.labels import label_argument_problem

MODELS = ("vgg11", "resnet18", "mobilenet_v3_small", "mobilenet_v3_large")
DATASETS = ("cifar10", "imagefolder")
FORMATS = ("table", "csv", "json", "markdown")
EXPORTER_URL = "http://127.0.0.1:9945/metrics"  # the board's own exporter: the trainer reads epoch energy there
PowerMode = Union[None, int, str]
MAX_RUNS = 10000  # a sweep is hours per run: more than this is a typo, and --dry-run would print for ever


class PlanError(Exception):
    """One line naming the plan file, the key and the fix."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def id_part(text: str) -> str:
    """``text`` as a run-id part (letters, digits, ``_.-``); where that changed it, a short stable hash of the
    original follows, so ``"15W 6CORE"`` and ``"15W_6CORE"`` stay distinct."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
    if safe == text:
        return text
    return "{}-{}".format(safe, hashlib.sha1(text.encode("utf-8")).hexdigest()[:6])


def attempt_id(run_id: str, attempt: int) -> str:
    """The trainer's run id for one attempt: a redone run is a new run (``-a2``, ``-a3``, ...), so the epochs
    of two attempts never mix under one id."""
    return run_id if attempt <= 1 else "{}-a{}".format(run_id, attempt)


@dataclass(frozen=True)
class RunSpec:
    """One trainer run of the sweep on one board; ``run_id`` names it in the journal and (first attempt)
    in Prometheus."""
    run_id: str
    model: str
    batch_size: int
    workers: int
    prefetch_factor: int
    power_mode: PowerMode
    location: str  # the dataset location's name, e.g. sd, ssd, usb
    data_dir: str
    repeat: int


@dataclass
class Plan:
    path: str
    name: str
    repeats: int
    dataset: str
    epochs: int
    max_batches: Optional[int]
    metrics_port: int
    device_name: Optional[str]
    exporter_url: Optional[str]
    extra_args: List[str]
    command: Optional[List[str]]
    sweep: Dict[str, Any]
    jetson_clocks: bool
    fan_max: bool
    drop_caches: bool
    output_dir: str
    prometheus: Optional[str]
    report_format: str
    plots: bool
    warmup_epochs: int

    @property
    def board(self) -> str:
        """The board the sweep runs on: trainer.device_name, else this machine's hostname."""
        return self.device_name or socket.gethostname()

    def runs(self) -> List[RunSpec]:
        """Every run, in rounds: each round runs every configuration once (repeats round-robin, so a
        configuration's spread holds the machine's drift over the sweep, not one stretch of it); within a
        round, power mode outermost (changing it is slow and may need the board to settle), then dataset
        location, model and loader settings. Run ids name the configuration and the repeat, never the
        position, so a journal written in another order still means the same runs. Run ids end with the
        board, so two boards running one plan never share one."""
        s = self.sweep
        out = []
        for repeat, mode, (location, data_dir), model, batch, workers, prefetch in itertools.product(
                range(self.repeats), s["power_mode"], s["dataset_location"].items(), s["model"],
                s["batch_size"], s["workers"], s["prefetch_factor"]):
            parts = [self.name, model, "b{}".format(batch), "w{}".format(workers), "pf{}".format(prefetch),
                     "pm-{}".format("asis" if mode is None else id_part(str(mode))), location]
            if self.repeats > 1:
                parts.append("r{}".format(repeat))
            parts.append(id_part(self.board))
            out.append(RunSpec("-".join(parts), model, batch, workers, prefetch, mode, location, data_dir, repeat))
        return out


def _fail(path: str, key: str, problem: str) -> PlanError:
    return PlanError("{}: {}: {}".format(path, key, problem))


def _section(path: str, raw: Any, key: str, allowed: List[str]) -> Dict[str, Any]:
    value = {} if raw is None else raw
    if not isinstance(value, dict):
        raise _fail(path, key, "must be a mapping")
    for k in value:
        if k not in allowed:
            where = "{}.{}".format(key, k) if key else str(k)
            raise _fail(path, where, "unknown key (known: {})".format(", ".join(allowed)))
    return value


def _int(path: str, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(path, key, "must be an integer >= {}, got {!r}".format(minimum, value))
    return value


def _str(path: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, key, "must be a non-empty string, got {!r}".format(value))
    return value


def _bool(path: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, key, "must be true or false, got {!r}".format(value))
    return value


def _url(path: str, key: str, value: Any) -> Optional[str]:
    if value is not None and not re.match(r"^https?://", _str(path, key, value)):
        raise _fail(path, key, "must be an http:// or https:// URL (or null), got {!r}".format(value))
    return value


def _list(path: str, key: str, value: Any, check) -> list:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise _fail(path, key, "must list at least one value")
    checked = [check("{}[{}]".format(key, i), v) for i, v in enumerate(items)]
    if len(set(map(repr, checked))) != len(checked):
        raise _fail(path, key, "lists a value twice")
    return checked


def _check_size(path: str, sweep: Dict[str, Any], repeats: int) -> None:
    """Count the runs from the list lengths, before any run is built."""
    sizes = [(key, len(values)) for key, values in sweep.items()] + [("repeats", repeats)]
    total = 1
    for _, size in sizes:
        total *= size
    if total > MAX_RUNS:
        raise _fail(path, "sweep", "{} runs ({}); at most {}: shorten the lists or repeats, or split the plan".format(
            total, " x ".join("{} {}".format(key, size) for key, size in sizes), MAX_RUNS))


# the labels the runner gives every run (experiment.runner: the plan's context, the board's settings as found by
# the controls, the CPUs, the page cache, a --profile pass): a plan's own label of that name would contradict them
RUNNER_LABELS = frozenset(("plan", "dataset_location", "data_dir", "power_mode_requested", "controls", "power_mode",
                           "power_mode_id", "jetson_clocks", "fan_speed", "jetpack", "l4t", "board", "cpu_count",
                           "page_cache", "profile_pass"))


def _check_labels(path: str, extra_args: List[str]) -> None:
    """The --label arguments among the trainer's extra_args, checked here as the trainer checks them (a label
    named __name__ or after a measured field failed only once a run started), none named as one the runner sets
    and none given twice. argparse takes any unambiguous prefix of --label (--la, --lab, --labe), and its value
    after a space or an '='."""
    seen = set()  # type: set
    for i, arg in enumerate(extra_args):
        flag, eq, inline = arg.partition("=")
        if len(flag) < 4 or not "--label".startswith(flag):
            continue
        text = inline if eq else (extra_args[i + 1] if i + 1 < len(extra_args) else "")
        key = text.partition("=")[0]
        problem = label_argument_problem(text)
        if not problem and key in RUNNER_LABELS:
            problem = "{!r}: the runner sets {} for every run (as it does {}); name yours otherwise".format(
                text, key, ", ".join(sorted(RUNNER_LABELS - {key})))
        if not problem and key in seen:
            problem = "{!r}: {} is given more than once; give each label once".format(text, key)
        if problem:
            raise _fail(path, "trainer.extra_args[{}]".format(i), "--label " + problem)
        seen.add(key)


def load(path: str) -> Plan:
    raw = read_mapping(path, "", PlanError, "plan")
    top = _section(path, raw, "", ["name", "repeats", "trainer", "sweep", "controls", "output", "report"])
    trainer = _section(path, top.get("trainer"), "trainer", ["dataset", "epochs", "max_batches", "metrics_port",
                                                            "device_name", "exporter_url", "extra_args", "command"])
    sweep = _section(path, top.get("sweep"), "sweep", ["model", "batch_size", "workers", "prefetch_factor",
                                                      "power_mode", "dataset_location"])
    controls = _section(path, top.get("controls"), "controls", ["jetson_clocks", "fan_max", "drop_caches"])
    output = _section(path, top.get("output"), "output", ["dir"])
    report = _section(path, top.get("report"), "report", ["prometheus", "format", "plots", "warmup_epochs"])

    name = _str(path, "name", top.get("name", "sweep"))
    if not re.match(r"^[A-Za-z0-9_.-]+\Z", name):
        raise _fail(path, "name", "use letters, digits, '_', '.', '-' only (it starts every run_id)")
    dataset = trainer.get("dataset", "cifar10")
    if dataset not in DATASETS:
        raise _fail(path, "trainer.dataset", "unknown dataset {!r} (known: {})".format(dataset, ", ".join(DATASETS)))
    max_batches = trainer.get("max_batches")
    if max_batches is not None:
        max_batches = _int(path, "trainer.max_batches", max_batches, 1)
    device_name = trainer.get("device_name")
    if device_name is not None:
        device_name = _str(path, "trainer.device_name", device_name)
    extra = trainer.get("extra_args", [])
    if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
        raise _fail(path, "trainer.extra_args", "must be a list of strings")
    _check_labels(path, extra)
    command = trainer.get("command")
    if command is not None and (not isinstance(command, list) or not command
                                or not all(isinstance(a, str) and a for a in command)):
        raise _fail(path, "trainer.command", "must be a non-empty list of strings (the program and its arguments)")

    def model(key: str, v: Any) -> str:
        if v not in MODELS:
            raise _fail(path, key, "unknown model {!r} (known: {})".format(v, ", ".join(MODELS)))
        return v

    def power_mode(key: str, v: Any) -> PowerMode:
        if v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0) or (isinstance(v, str) and v):
            return v
        raise _fail(path, key, "must be an nvpmodel mode name, a mode id >= 0, or null to leave it as is")

    locations = sweep.get("dataset_location")
    if not isinstance(locations, dict) or not locations:
        raise _fail(path, "sweep.dataset_location", "must map a storage name to a data directory, "
                                                    "e.g. {sd: /home/me/data, ssd: /mnt/ssd/data}")
    for k, v in locations.items():
        if not isinstance(k, str) or not re.match(r"^[A-Za-z0-9_.-]+\Z", k):
            raise _fail(path, "sweep.dataset_location", "storage name {!r}: use letters, digits, '_', '.', '-'"
                        .format(k))
        _str(path, "sweep.dataset_location.{}".format(k), v)

    checked_sweep = {
        "model": _list(path, "sweep.model", sweep.get("model", ["vgg11"]), model),
        "batch_size": _list(path, "sweep.batch_size", sweep.get("batch_size", [16]),
                            lambda k, v: _int(path, k, v, 1)),
        "workers": _list(path, "sweep.workers", sweep.get("workers", [4]), lambda k, v: _int(path, k, v, 0)),
        "prefetch_factor": _list(path, "sweep.prefetch_factor", sweep.get("prefetch_factor", [2]),
                                 lambda k, v: _int(path, k, v, 1)),
        "power_mode": _list(path, "sweep.power_mode", sweep.get("power_mode", [None]), power_mode),
        "dataset_location": dict(locations),
    }
    fmt = report.get("format", "markdown")
    if fmt not in FORMATS:
        raise _fail(path, "report.format", "must be one of {}, got {!r}".format(", ".join(FORMATS), fmt))
    prometheus = _url(path, "report.prometheus", report.get("prometheus"))
    exporter_url = _url(path, "trainer.exporter_url", trainer.get("exporter_url", EXPORTER_URL))
    epochs = _int(path, "trainer.epochs", trainer.get("epochs", 6), 1)
    warmup = _int(path, "report.warmup_epochs", report.get("warmup_epochs", 1), 0)
    if warmup >= epochs:
        raise _fail(path, "report.warmup_epochs", "{} leaves no epoch to average of trainer.epochs {}".format(
            warmup, epochs))
    port = _int(path, "trainer.metrics_port", trainer.get("metrics_port", 9946), 1)
    if port > 65535:
        raise _fail(path, "trainer.metrics_port", "{} is not a TCP port (1-65535)".format(port))
    repeats = _int(path, "repeats", top.get("repeats", 1), 1)
    _check_size(path, checked_sweep, repeats)
    return Plan(
        path=path, name=name, repeats=repeats, dataset=dataset,
        epochs=epochs, max_batches=max_batches, metrics_port=port,
        device_name=device_name, exporter_url=exporter_url, extra_args=list(extra), command=command,
        sweep=checked_sweep,
        jetson_clocks=_bool(path, "controls.jetson_clocks", controls.get("jetson_clocks", True)),
        fan_max=_bool(path, "controls.fan_max", controls.get("fan_max", True)),
        drop_caches=_bool(path, "controls.drop_caches", controls.get("drop_caches", True)),
        output_dir=_str(path, "output.dir", output.get("dir", "out/experiment")),
        prometheus=prometheus, report_format=fmt, plots=_bool(path, "report.plots", report.get("plots", True)),
        warmup_epochs=warmup,
    )
