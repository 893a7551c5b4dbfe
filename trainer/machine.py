"""The machine an epoch ran on, as every what-if models it: the CPUs the run's affinity mask allowed, the part of
them other tenants took while it ran, the run's own CPU seconds (its main process, its loader's workers), and the
memory free for more. Read from /proc at a window's edges; torch-free (the report reads timelines too)."""
import math
import os
from typing import NamedTuple, Optional, Sequence

BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # /proc/stat cpuN: user nice system [idle iowait] irq softirq steal (guest is in user)


class CpuSample(NamedTuple):
    """CPU counters at one instant."""
    own_s: float  # this process's CPU seconds, all its threads
    children_s: float  # its reaped children's (a DataLoader's workers, once the loader has ended them)
    busy_s: float  # busy seconds of the affinity mask's CPUs, whoever ran on them (NaN: no /proc/stat)
    cpus: int  # the affinity mask's CPUs


class Machine(NamedTuple):
    """What one window (an epoch) had of the machine. Unknown figures are NaN."""
    cpus: int  # the affinity mask's CPUs
    main_cpu_s: float  # the main process's CPU seconds over the window (all its threads)
    workers_cpu_s: float = math.nan  # its loader workers' that ended inside the window (persistent ones: unknown)
    busy_cpu_s: float = math.nan  # CPU seconds of every process on the mask's CPUs over the window
    span_s: float = math.nan  # the window's wall seconds

    def cores(self, workers_cpu_s: float) -> float:
        """The cores the run had: the mask's CPUs less what other tenants used of them over the window (busy time
        beyond the run's own ``main_cpu_s`` + ``workers_cpu_s``), never less than the run itself used."""
        own = self.main_cpu_s + workers_cpu_s
        if not (self.span_s > 0 and math.isfinite(self.busy_cpu_s)):
            return float(self.cpus)
        others = max(self.busy_cpu_s - own, 0.0) / self.span_s
        return min(float(self.cpus), max(self.cpus - others, own / self.span_s, 1e-3))

    @classmethod
    def between(cls, began: CpuSample, ended: CpuSample, span_s: float) -> "Machine":
        return cls(ended.cpus, ended.own_s - began.own_s, ended.children_s - began.children_s,
                   ended.busy_s - began.busy_s, span_s)

    def to_dict(self) -> dict:
        return {name: None if isinstance(value, float) and math.isnan(value) else value
                for name, value in self._asdict().items()}

    @classmethod
    def from_dict(cls, data: dict) -> "Machine":
        """``to_dict``'s; ValueError or KeyError where it is not one."""
        values = [math.nan if data.get(name) is None else float(data[name]) for name in cls._fields[1:]]
        if int(data["cpus"]) < 1 or not all(math.isnan(v) or math.isfinite(v) for v in values):
            raise ValueError("machine: cpus below 1 or a figure not finite")
        return cls(int(data["cpus"]), *values)


def usable_cpus() -> Sequence[int]:
    """The CPUs this process may run on (its affinity mask: a container or taskset may allow fewer)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def busy_seconds(cpus: Sequence[int], stat: str = "/proc/stat") -> float:
    """Seconds the CPUs ``cpus`` have spent busy since boot (NaN where /proc/stat cannot be read)."""
    wanted = {"cpu{}".format(n) for n in cpus}
    try:
        with open(stat) as f:
            ticks = sum(sum(int(fields[1 + i]) for i in BUSY_FIELDS)
                        for fields in (line.split() for line in f) if fields and fields[0] in wanted)
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return math.nan


def cpu_sample() -> CpuSample:
    times = os.times()
    cpus = usable_cpus()
    return CpuSample(times.user + times.system, times.children_user + times.children_system, busy_seconds(cpus),
                     len(cpus))


def available_memory(meminfo: str = "/proc/meminfo") -> Optional[float]:
    """Bytes the kernel says can be had without swapping (MemAvailable; on a Jetson the GPU shares this RAM)."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def resident_bytes(statm: str = "/proc/self/statm") -> Optional[int]:
    """This process's resident memory that is its own (resident less file-backed and shared memory: not the
    libraries, nor the batches it hands over in shared memory); None where /proc cannot be read."""
    try:
        with open(statm) as f:
            fields = f.read().split()
        return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
