"""The machine an epoch ran on, as every what-if models it: the CPUs the run's affinity mask allowed, the part of
them other tenants took while it ran, the run's own CPU seconds (its main process, its loader's workers), and the
memory free for more. Read from /proc at a window's edges; torch-free (the report reads timelines too)."""
import math
import os
import time
from typing import NamedTuple, Optional, Sequence, Tuple

BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # /proc/stat cpuN: user nice system [idle iowait] irq softirq steal (guest is in user)


class CpuSample(NamedTuple):
    """CPU counters at one instant."""
    own_s: float  # this process's CPU seconds, all its threads
    children_s: float  # its reaped children's (a DataLoader's workers, once the loader has ended them)
    busy_s: float  # busy seconds of the affinity mask's CPUs, whoever ran on them (NaN: no /proc/stat)
    cpus: int  # the affinity mask's CPUs
    thread: Optional[Tuple[float, float]]  # the calling thread's ``thread_schedule``


class Machine(NamedTuple):
    """What one window (an epoch) had of the machine. Unknown figures are NaN."""
    cpus: int  # the affinity mask's CPUs
    main_cpu_s: float  # the main process's CPU seconds over the window (all its threads)
    workers_cpu_s: float = math.nan  # its loader workers' that ended inside the window (persistent ones: unknown)
    busy_cpu_s: float = math.nan  # CPU seconds of every process on the mask's CPUs over the window
    span_s: float = math.nan  # the window's wall seconds
    # how much slower than alone the main thread's CPU work ran: (its CPU + its waits for a CPU) / its CPU
    main_sharing: float = math.nan

    def others_cores(self, workers_cpu_s: float) -> float:
        """The cores other tenants used of the mask's CPUs on average over the window: busy time beyond the run's own
        ``main_cpu_s`` + ``workers_cpu_s`` (0 where unknown), never so much that the run had less than it used."""
        if not (self.span_s > 0 and math.isfinite(self.busy_cpu_s)):
            return 0.0
        own = self.main_cpu_s + workers_cpu_s
        return min(max(self.busy_cpu_s - own, 0.0), max(self.cpus * self.span_s - own, 0.0)) / self.span_s

    @classmethod
    def between(cls, began: CpuSample, ended: CpuSample, span_s: float) -> "Machine":
        """Over a window, from samples taken at its edges by one thread (the main process's loop)."""
        sharing = math.nan
        if began.thread is not None and ended.thread is not None and ended.thread[0] > began.thread[0]:
            ran, waited = (e - b for e, b in zip(ended.thread, began.thread))
            sharing = 1 + waited / ran
        return cls(ended.cpus, ended.own_s - began.own_s, ended.children_s - began.children_s,
                   ended.busy_s - began.busy_s, span_s, sharing)

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
    times = os.times()  # clock ticks; process_time is finer
    cpus = usable_cpus()
    return CpuSample(time.process_time(), times.children_user + times.children_system, busy_seconds(cpus), len(cpus),
                     thread_schedule())


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


def private_bytes(smaps: str = "/proc/self/smaps_rollup") -> Optional[int]:
    """This process's private memory: what one more like it adds (not the libraries nor the pages a forked worker
    still shares with its parent, which its resident size counts); None where /proc cannot tell. Reading it takes
    milliseconds."""
    try:
        with open(smaps) as f:
            return sum(int(line.split()[1]) * 1024 for line in f if line.startswith(("Private_Clean:", "Private_Dirty:")))
    except (OSError, ValueError, IndexError):
        return None


def thread_schedule(schedstat: str = "/proc/thread-self/schedstat") -> Optional[Tuple[float, float]]:
    """(seconds the calling thread has run on a CPU, seconds it has been runnable but waiting for one); None where
    the kernel keeps no scheduler statistics."""
    try:
        with open(schedstat, "rb") as f:
            ran, waited = f.read().split()[:2]
        return int(ran) / 1e9, int(waited) / 1e9
    except (OSError, ValueError):
        return None
