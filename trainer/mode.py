"""The power mode a run trained in, as the hardware it gave the run: numbers a model can scale time and power by,
not a name (``MAXN`` on one board is not ``MAXN`` on another). Recorded in run_info and every --results record as
the ``mode_*`` labels (MODE_LABELS; absent where unknown):

  mode_cpu_cores        the CPUs the run may use: its affinity mask (a Jetson's power mode takes cores offline,
                        which leaves them out of the mask; a cpuset or taskset elsewhere does the same)
  mode_cpu_quota_cores  the cgroup CPU bandwidth limit in cores (v1 cpu.cfs_quota_us / cpu.cfs_period_us, v2
                        cpu.max), where it is below mode_cpu_cores: off a Jetson, a stand-in for a lower clock
  mode_cpu_max_hz       the highest CPU clock the mode allows (sysfs scaling_max_freq of the mask's CPUs, else
                        nvpmodel.conf's CPU MAX_FREQ for the current mode)
  mode_gpu_max_hz       the GPU's (devfreq max_freq, else nvpmodel.conf's GPU MAX_FREQ)
  mode_emc_max_hz       the memory clock's cap (nvpmodel.conf's EMC MAX_FREQ: sysfs has it only in debugfs)

On a Jetson nvpmodel writes the mode it set to /var/lib/nvpmodel/status (``pmode:0002``) and describes every
mode in /etc/nvpmodel.conf: ``< POWER_MODEL ID=2 NAME=15W >`` then lines ``PARAM ARG VALUE`` (``CPU_ONLINE CORE_4
0``, ``CPU_A78_0 MAX_FREQ 1420800`` in kHz, ``GPU MAX_FREQ 612000000`` and ``EMC MAX_FREQ 3199000000`` in Hz; -1 or
0: no cap). Torch-free (the report and the bench read modes too)."""
import glob
import math
import os
import re
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from exporter.readfile import read_regular
from exporter.sources.thermal import GPU_DEVFREQ_NAMES, NVPMODEL_STATUS, PMODE
from trainer.machine import usable_cpus

NVPMODEL_CONF = "/etc/nvpmodel.conf"
CGROUP_ROOT = "/sys/fs/cgroup"
MODE_LABELS = ("mode_cpu_cores", "mode_cpu_quota_cores", "mode_cpu_max_hz", "mode_gpu_max_hz", "mode_emc_max_hz")
_MODEL = re.compile(r"^<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>")
_SECTION = re.compile(r"^<")
_POWER_MODEL = re.compile(r"^<\s*POWER_MODEL\b")


class Mode(NamedTuple):
    """One power mode's hardware; NaN where unknown (no cap, or nothing says)."""
    cpu_cores: float
    cpu_quota_cores: float = math.nan
    cpu_max_hz: float = math.nan
    gpu_max_hz: float = math.nan
    emc_max_hz: float = math.nan

    def labels(self) -> Dict[str, str]:
        """The known figures as run_info labels (``%.6g``: a clock to the kHz, a quota to a thousandth of a core)."""
        return {name: "{:.6g}".format(value) for name, value in zip(MODE_LABELS, self) if math.isfinite(value)}

    @classmethod
    def of_labels(cls, labels: Dict[str, str]) -> Optional["Mode"]:
        """A run's mode from its labels; None where it recorded none (a run from before modes were recorded)."""
        try:
            values = [float(labels[name]) if labels.get(name) else math.nan for name in MODE_LABELS]
        except ValueError:
            return None
        return None if math.isnan(values[0]) else cls(*values)

    def cpu_capacity(self) -> float:
        """The cores' worth of CPU the mode gives: the quota where it binds, else the cores."""
        return min(self.cpu_cores, self.cpu_quota_cores) if math.isfinite(self.cpu_quota_cores) else self.cpu_cores


class NvpModel(NamedTuple):
    """One POWER_MODEL of nvpmodel.conf."""
    id: int
    name: str
    mode: Mode


def _cap(text: str, scale: float) -> float:
    """A MAX_FREQ value in Hz; NaN for nvpmodel's "no cap" (-1, 0)."""
    value = float(text) * scale
    return value if value > 0 else math.nan


def parse_nvpmodel_conf(text: str) -> List[NvpModel]:
    """The modes of an nvpmodel.conf; ValueError naming the line where a mode's line cannot be read. A CPU
    cluster's clock is in kHz (its PARAM is a CPU_* CLOCK), the GPU's and EMC's in Hz; the mode's CPU clock is
    its fastest cluster's cap."""
    models = []  # type: List[NvpModel]
    current = None  # type: Optional[Dict[str, object]]
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        model = _MODEL.match(line)
        if model is None and _POWER_MODEL.match(line):
            raise ValueError("nvpmodel.conf line {}: {!r}: not < POWER_MODEL ID=<number> NAME=<name> >".format(
                number, raw.strip()))
        if model or _SECTION.match(line):
            if current is not None:
                models.append(_finished(current))
            current = {"id": int(model.group(1)), "name": model.group(2), "online": 0, "cpu": [], "gpu": math.nan,
                       "emc": math.nan} if model else None
            continue
        if current is None:
            continue  # a PARAM section's ARG_NAME PATH lines
        fields = line.split()
        try:
            if len(fields) != 3:
                raise ValueError("not PARAM ARG VALUE")
            param, arg, value = fields
            if param == "CPU_ONLINE":
                current["online"] += int(value) == 1  # type: ignore
            elif param.startswith("CPU_") and arg == "MAX_FREQ":
                current["cpu"].append(_cap(value, 1e3))  # type: ignore
            elif param == "GPU" and arg == "MAX_FREQ":
                current["gpu"] = _cap(value, 1.0)
            elif param == "EMC" and arg == "MAX_FREQ":
                current["emc"] = _cap(value, 1.0)
        except ValueError as error:
            raise ValueError("nvpmodel.conf line {}: {!r}: {}".format(number, raw.strip(), error))
    if current is not None:
        models.append(_finished(current))
    return models


def _finished(current: Dict[str, object]) -> NvpModel:
    cpu = [c for c in current["cpu"] if math.isfinite(c)]  # type: ignore
    mode = Mode(float(current["online"]) or math.nan, math.nan, max(cpu) if cpu else math.nan,
                current["gpu"], current["emc"])  # type: ignore
    return NvpModel(int(current["id"]), str(current["name"]), mode)  # type: ignore


MAX_FILE_BYTES = 1 << 20  # nvpmodel.conf is tens of kB, the /proc and /sys files a line


def _read(path: str) -> Optional[str]:
    """The text of a settings file, or None where it cannot be read (exporter.readfile: a FIFO or a device in its
    place does not hang the run's start)."""
    try:
        return read_regular(path, MAX_FILE_BYTES).decode("utf-8")
    except (OSError, ValueError):  # ValueError: Unreadable, UnicodeDecodeError
        return None


def _number(path: str, scale: float = 1.0) -> float:
    text = _read(path)
    try:
        return float(text.split()[0]) * scale if text else math.nan
    except (ValueError, IndexError):
        return math.nan


def _numbers(fields: Sequence[str]) -> Tuple[float, float]:
    """cgroup v2 cpu.max's "QUOTA PERIOD" as numbers; NaN for "max" or anything else unreadable."""
    try:
        quota, period = fields
        return float(quota), float(period)
    except ValueError:
        return math.nan, math.nan


def nvpmodel_mode(conf: str = NVPMODEL_CONF, status: str = NVPMODEL_STATUS) -> Optional[NvpModel]:
    """The mode nvpmodel last set, from its table; None off a Jetson or where either file cannot be read."""
    text, state = _read(conf), _read(status)
    found = PMODE.search(state or "")
    if text is None or found is None:
        return None
    try:
        models = parse_nvpmodel_conf(text)
    except ValueError:
        return None
    return next((m for m in models if m.id == int(found.group(1))), None)


def cgroup_quota_cores(proc_cgroup: str = "/proc/self/cgroup", root: str = CGROUP_ROOT) -> float:
    """The CPU bandwidth limit of this process's cgroup and its parents, in cores (the tightest); NaN: none."""
    quotas = []
    for line in (_read(proc_cgroup) or "").splitlines():
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0" and not controllers:  # v2: cpu.max "QUOTA PERIOD" or "max PERIOD"
            files = [(os.path.join(d, "cpu.max"), None) for d in _up(os.path.join(root, "unified"), path)
                     + _up(root, path)]
        elif "cpu" in controllers.split(","):
            base = os.path.join(root, controllers)
            if not os.path.isdir(base):
                base = os.path.join(root, "cpu")
            files = [(os.path.join(d, "cpu.cfs_quota_us"), os.path.join(d, "cpu.cfs_period_us"))
                     for d in _up(base, path)]
        else:
            continue
        for quota_file, period_file in files:
            if period_file is None:
                quota, period = _numbers((_read(quota_file) or "").split())
            else:
                quota, period = _number(quota_file), _number(period_file)
            if quota > 0 and period > 0:  # "max", -1 or unreadable: no limit this process can be held to
                quotas.append(quota / period)
    return min(quotas) if quotas else math.nan


def _up(root: str, path: str) -> List[str]:
    """The cgroup folder of ``path`` under ``root`` and its parents up to ``root``, where they exist."""
    parts = [p for p in path.strip("/").split("/") if p]
    folders = [os.path.join(root, *parts[:n]) for n in range(len(parts), -1, -1)]
    return [f for f in folders if os.path.isdir(f)]


def _sysfs_clocks(cpus: Sequence[int], sysfs: str) -> List[float]:
    """(CPU max Hz over the mask's CPUs, GPU max Hz) from cpufreq and devfreq; NaN where sysfs has none."""
    cpu = [_number(os.path.join(sysfs, "devices", "system", "cpu", "cpu{}".format(n), "cpufreq", "scaling_max_freq"),
                   1e3) for n in cpus]
    cpu = [c for c in cpu if math.isfinite(c)]
    gpu = math.nan
    for path in sorted(glob.glob(os.path.join(sysfs, "class", "devfreq", "*"))):
        if GPU_DEVFREQ_NAMES.search(os.path.basename(path)):
            gpu = _number(os.path.join(path, "max_freq"))
            break
    return [max(cpu) if cpu else math.nan, gpu]


def current_mode(sysfs: str = "/sys", conf: str = NVPMODEL_CONF, status: str = NVPMODEL_STATUS,
                 proc_cgroup: str = "/proc/self/cgroup", cgroup_root: str = CGROUP_ROOT) -> Mode:
    """The mode this process runs in now: the kernel's view (affinity, cgroup, sysfs clocks) first, nvpmodel's
    table for what the kernel does not show (the EMC cap; clocks where sysfs lacks cpufreq or devfreq)."""
    cpus = usable_cpus()
    quota = cgroup_quota_cores(proc_cgroup, cgroup_root)
    cpu_hz, gpu_hz = _sysfs_clocks(cpus, sysfs)
    table = nvpmodel_mode(conf, status)
    emc_hz = math.nan
    if table is not None:
        cpu_hz = cpu_hz if math.isfinite(cpu_hz) else table.mode.cpu_max_hz
        gpu_hz = gpu_hz if math.isfinite(gpu_hz) else table.mode.gpu_max_hz
        emc_hz = table.mode.emc_max_hz
    return Mode(float(len(cpus)), quota if quota < len(cpus) else math.nan, cpu_hz, gpu_hz, emc_hz)
