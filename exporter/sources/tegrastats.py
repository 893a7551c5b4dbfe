"""tegrastats: a child `tegrastats --interval MS` (started again when it exits), or a recorded log replayed in a loop.

The parser reads every generation's line format (see tests/exporter/fixtures/
tegrastats_lines.txt for the real lines it is tested on):
  JetPack 4   `POM_5V_IN 1750/1628`, AGX Xavier's bare `GPU 463/463 CPU 618/618`
  JetPack 5/6 `07-09-2024 13:31:31 ...` prefix, `VDD_IN 2763mW/2846mW`, `GR3D_FREQ 0%@[114]`,
              lower-case sensors on 6 (`cpu@52.562C`)
  JetPack 7   `VIN_SYS_5V0 3918mW/3952mW/4019mW`, `cpu@43.093C/43.093C`
  non-root    no `@freq` after the percentages; `NC` rails; `-256C` offline sensors.
The first number of a rail or a sensor is the instantaneous one; the others
are tegrastats' own running averages, which the exporter does not use.

Lines come from a child process or a file, so they are treated as hostile:
every regex runs in linear time, a line longer than MAX_LINE is refused before
any regex sees it, numbers become floats (an absurd one is dropped at the
exposition boundary, exporter.metrics.exposable), and a line whose power cannot
be right (a negative rail, an absurd one) is rejected whole with a fixed reason
(BadLine), so the board power never silently changes meaning.
"""
import logging
import re
import subprocess
import threading
import time
from typing import Dict, List, NamedTuple, Optional

from exporter.energy import INPUT_RAILS, PowerMeter, max_gap_for
from exporter.metrics import Sample
from exporter.ranges import RAIL_WATTS, outside
from exporter.readfile import Unreadable, read_regular
from exporter.sources.base import Source, SourceDown

log = logging.getLogger(__name__)

MIB = 1024 * 1024
OFFLINE_CELSIUS = -256.0
# PMIC@100C on Nano/TX is a fixed placeholder, not a sensor (jetson-stats skips it too).
FAKE_SENSORS = ("PMIC",)
MAX_RECORDING_BYTES = 64 << 20  # a day of lines at 1 s is ~45 MB
MAX_LINE = 4096  # real lines are under 1000 characters (475 in the fixtures)

_RAIL = re.compile(r"(?<!\S)([A-Za-z][A-Za-z0-9_]*) (-?\d+)(?:mW)?/(-?\d+)(?:mW)?(?:/(-?\d+)(?:mW)?)?(?=\s|$)")
_TEMP = re.compile(r"(?<!\S)([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C(?:/-?\d+(?:\.\d+)?C)*(?=\s|$)")
_CPU = re.compile(r"(?<!\S)CPU \[([^\[\]]*)\]")  # no '[' inside: each try stops at the next one
_CORE = re.compile(r"^(\d+)%(?:@(\d+))?$")
_ENGINE = re.compile(r"(?<!\S)(GR3D_FREQ|EMC_FREQ) (\d+)%(?:@\[?(\d+)(?:,\d+)*\]?)?")
_MEM = re.compile(r"(?<!\S)(RAM|SWAP) (\d+)/(\d+)MB")


def recorded_lines(path: str) -> List[str]:
    """The lines of a recorded tegrastats log (comments and blanks left out), read within bounds: a device
    (/dev/zero), a FIFO or a huge file would otherwise be read for ever or into all memory. OSError if it
    cannot be opened, ValueError naming the bound it passes."""
    try:
        raw = read_regular(path, MAX_RECORDING_BYTES)
    except Unreadable as error:
        fix = "replay a part of it (`head -n 100000`)" if "larger" in str(error) else \
            "record a log with `tegrastats --logfile FILE` and replay that"
        raise ValueError("{}; {}".format(error, fix))
    return [ln for ln in raw.decode("utf-8", "replace").split("\n") if ln.strip() and not ln.startswith("#")]


class TegraStats(NamedTuple):
    """One parsed line, in base units; absent fields are empty/None."""
    rails_w: Dict[str, float]
    temps_c: Dict[str, float]
    cpu_busy: List[Optional[float]]  # per core, None when the core is off
    gpu_busy: Optional[float]
    emc_busy: Optional[float]
    emc_hz: Optional[float]
    ram_used: Optional[float]
    ram_total: Optional[float]
    swap_used: Optional[float]
    swap_total: Optional[float]


class BadLine(ValueError):
    """A line that must not be used; the message is a fixed, short reason."""


def parse_line(line: str) -> TegraStats:
    """The fields of one tegrastats line; BadLine if the line is too long or its power is impossible."""
    if len(line) > MAX_LINE:
        raise BadLine("line longer than {} characters".format(MAX_LINE))
    rails = {}  # type: Dict[str, float]
    for name, cur, _avg, _third in _RAIL.findall(line):
        if name in ("RAM", "SWAP", "IRAM") or name == "NC":
            continue  # memory totals, and rails marked not connected
        watts = float(cur) / 1000.0
        if watts < 0:
            raise BadLine("negative rail power")
        if outside(watts, RAIL_WATTS):
            raise BadLine("rail power above {:g} W".format(RAIL_WATTS.high))
        if name in rails:  # which one is the board's? neither: summed, a Nano read 900 W
            raise BadLine("rail {} given twice".format(name))
        rails[name] = watts
    for name in INPUT_RAILS:  # named but not read: the sum of the other rails would pass for board power
        if name not in rails and re.search(r"(?<!\S){}(?!\S)".format(name), line):
            raise BadLine("input rail {} unparseable".format(name))
    temps = {}  # type: Dict[str, float]
    for name, value in _TEMP.findall(line):
        celsius = float(value)
        if celsius <= OFFLINE_CELSIUS or name in FAKE_SENSORS:
            continue
        temps[name] = celsius
    cpus = []  # type: List[Optional[float]]
    m = _CPU.search(line)
    if m:
        for core in m.group(1).split(","):
            cm = _CORE.match(core.strip())
            cpus.append(float(cm.group(1)) / 100.0 if cm else None)
    engines = {name: (float(pct) / 100.0, float(mhz) * 1e6 if mhz else None)
               for name, pct, mhz in _ENGINE.findall(line)}
    mem = {name: (float(used) * MIB, float(total) * MIB) for name, used, total in _MEM.findall(line)}
    ram = mem.get("RAM", (None, None))
    swap = mem.get("SWAP", (None, None))
    gpu = engines.get("GR3D_FREQ", (None, None))
    emc = engines.get("EMC_FREQ", (None, None))
    return TegraStats(rails, temps, cpus, gpu[0], emc[0], emc[1], ram[0], ram[1], swap[0], swap[1])


def stats_samples(st: TegraStats) -> List[Sample]:
    """The Jetson-state series a line carries (power goes through the PowerMeter)."""
    out = [Sample("edgescope_temperature_celsius", {"sensor": k}, v) for k, v in sorted(st.temps_c.items())]
    out += [Sample("edgescope_cpu_utilisation_ratio", {"cpu": "cpu{}".format(i)}, v)
            for i, v in enumerate(st.cpu_busy) if v is not None]
    single = (("edgescope_gpu_utilisation_ratio", st.gpu_busy), ("edgescope_emc_utilisation_ratio", st.emc_busy),
              ("edgescope_memory_used_bytes", st.ram_used), ("edgescope_memory_total_bytes", st.ram_total),
              ("edgescope_swap_used_bytes", st.swap_used), ("edgescope_swap_total_bytes", st.swap_total))
    out += [Sample(name, {}, v) for name, v in single if v is not None]
    if st.emc_hz is not None:
        out.append(Sample("edgescope_clock_frequency_hertz", {"clock": "emc"}, st.emc_hz))
    return out


def next_backoff(backoff: float, lived: float, max_backoff: float) -> float:
    """Seconds to wait before starting a child that lived `lived` s, after waiting `backoff` s last time.

    Doubles from 1 s up to max_backoff while children keep failing; a child
    that lived max_backoff seconds or more was healthy, so the next wait is 1 s.
    """
    if lived >= max_backoff:
        backoff = 0.0
    return min(max_backoff, backoff * 2 if backoff else 1.0)


class TegrastatsSource(Source):
    """Reads lines in a background thread; each line is one power sample at its arrival time.

    A tegrastats child that exits (killed, crashed, a binary being replaced)
    is started again after a backoff that doubles from 1 s up to
    `max_backoff` while it keeps failing, and starts from 1 s again once a
    child has lived `max_backoff` seconds. Meanwhile the source is down with
    the child's exit status and last stderr line as the reason (no delay in
    it, so the reason stays one series). A replayed log is marked
    `replay="true"` in edgescope_power_source_info.
    """

    name = "tegrastats"

    def __init__(self, interval: float, replay_file: Optional[str] = None,
                 command: str = "tegrastats", fallback_from: str = "", max_backoff: float = 60.0) -> None:
        self._line_interval = interval
        self._replay = replay_file
        self._command = command
        self._max_backoff = max_backoff
        self._meter = PowerMeter(self.name, max_gap_for(interval), replay=replay_file is not None,
                                 fallback_from=fallback_from)
        self._lock = threading.Lock()
        self._latest = None  # type: Optional[TegraStats]
        self._latest_t = 0.0
        self._error = ""
        self._stop = threading.Event()
        self._proc = None  # type: Optional[subprocess.Popen]
        self.starts = 0  # children started so far
        self._rejected = ""  # why the latest line was not used ("" when it was)
        self._input_rail = ""  # the input rail once seen: a line without it is not the same board power
        if replay_file is None:
            self._start_child()
        self._thread = threading.Thread(target=self._run, name="tegrastats-reader", daemon=True)
        self._thread.start()

    def _start_child(self) -> None:
        ms = str(max(1, int(round(self._line_interval * 1000))))
        try:
            proc = subprocess.Popen([self._command, "--interval", ms], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, universal_newlines=True, errors="replace")
        except OSError as e:
            proc, self._error = None, "cannot run {}: {}".format(self._command, e.strerror or e)
        with self._lock:
            self._proc = proc
            self.starts += proc is not None
        if self._stop.is_set() and proc is not None:  # closed while starting: do not leave it running
            self._end_child(proc)

    def _child_lines(self):
        """The children's lines, one child after another, with the backoff between them."""
        backoff = 0.0
        while True:
            proc, started = self._proc, time.monotonic()
            if proc is not None:
                for line in proc.stdout:
                    yield line
                code = proc.wait()
                err = (proc.stderr.read() or "").strip().splitlines()
                proc.stdout.close()
                proc.stderr.close()
                self._error = "tegrastats exited with code {}{}".format(code, ": " + err[-1] if err else "")
            if self._stop.is_set():
                return
            backoff = next_backoff(backoff, time.monotonic() - started, self._max_backoff)
            log.warning("tegrastats source down: %s; starting it again in %gs", self._error, backoff)
            if self._stop.wait(backoff):
                return
            self._start_child()

    def _replay_lines(self):
        try:
            recorded = recorded_lines(self._replay)
        except ValueError as e:
            raise SourceDown("replay file {}: {}".format(self._replay, e))
        if not recorded:
            raise SourceDown("replay file {} has no tegrastats lines".format(self._replay))
        while True:
            for line in recorded:
                yield line
                if self._stop.wait(self._line_interval):
                    return

    def _run(self) -> None:
        try:
            for line in (self._child_lines() if self._replay is None else self._replay_lines()):
                if self._stop.is_set():
                    return
                self._take(line)
        except SourceDown as e:
            self._error = str(e)
        except (OSError, ValueError) as e:
            self._error = "reading tegrastats failed: {}".format(e)
        if self._error and not self._stop.is_set():
            log.warning("tegrastats source down: %s", self._error)

    def _take(self, line: str) -> None:
        """Use one line, or reject it: one bad line never stops the reader."""
        t = time.monotonic()
        try:
            st = parse_line(line)
            rail = next((r for r in INPUT_RAILS if r in st.rails_w), "")
            if st.rails_w and self._input_rail and rail != self._input_rail:
                raise BadLine("input rail {} missing".format(self._input_rail))
        except Exception as e:  # BadLine, or anything a line this parser never saw can cause
            reason = str(e) if isinstance(e, BadLine) else "unparseable line ({})".format(type(e).__name__)
            if reason != self._rejected:
                log.warning("tegrastats line rejected: %s: %.200r", reason, line)
            with self._lock:
                self._rejected, self._latest_t, self._error = reason, t, ""
            return
        with self._lock:
            if st.rails_w:
                self._input_rail = self._input_rail or rail
                self._meter.integrate(t, st.rails_w)
            self._latest, self._latest_t, self._rejected, self._error = st, t, "", ""

    def sample(self) -> List[Sample]:
        with self._lock:
            if self._error:
                raise SourceDown(self._error)
            if self._rejected:
                raise SourceDown("last tegrastats line rejected: " + self._rejected)
            if self._latest is None:
                raise SourceDown("no tegrastats line yet")
            limit = max(3 * self._line_interval, 5.0)
            if time.monotonic() - self._latest_t > limit:
                raise SourceDown("no tegrastats line for over {:g}s".format(limit))
            return self._meter.samples() + stats_samples(self._latest)

    @staticmethod
    def _end_child(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            proc = self._proc
        if proc is not None:
            self._end_child(proc)
