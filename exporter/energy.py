"""Power to energy, with the gaps and counter resets a real board produces.

Between two power readings on a monotonic clock the energy is the trapezoid
(P(t_i-1) + P(t_i)) / 2 * (t_i - t_i-1). A gap longer than `max_gap` (the
sources use GAP_INTERVALS sampling intervals, at least MIN_GAP seconds) is
not credited to anyone: nobody knows what the board drew while the source
was silent, so that time is added to `uncovered_seconds` instead
(`edgescope_board_energy_uncovered_seconds_total`) and the report and rules
can tell a complete energy from a partial one. A reading whose time is not
after the last one (a stale, repeated reading) adds nothing.

Where hardware keeps an energy counter (NVML, RAPL) the counter's increments
are used instead: the hardware counts through any gap. A counter below its
last reading is a wraparound only if it has a known range and the wrapped
increment is possible at `max_watts` over the elapsed time; otherwise the
counter restarted (driver reload, reset) and that interval is uncovered.
`PowerMeter` is what every power source keeps: it turns each power reading
into the board/rail gauges and energy counters of the contract.
"""
from typing import Dict, List, Optional

from exporter.metrics import Sample

INPUT_RAILS = ("VDD_IN", "POM_5V_IN")  # the board's input rail, where it has one (jtop's rule)
GAP_INTERVALS = 3  # a silence longer than this many sampling intervals is a gap
MIN_GAP = 1.0  # seconds: scheduling jitter on a loaded board is not a gap
MAX_PLAUSIBLE_WATTS = 10000.0  # one energy counter (a GPU, a RAPL zone) never draws more


# Sources of power lines: the last line a sample sees is up to one line interval old.
LINE_SOURCES = ("tegrastats", "jtop")


def lag_for(source: str, interval_s: float, line_interval_s: float) -> float:
    """How long a count read through a sampler of ``interval_s`` may lag the board: a source of lines adds
    its last line's age (the trainer's epoch energy bound and the report's both build on it)."""
    return interval_s + (line_interval_s if source in LINE_SOURCES else 0.0)


def max_gap_for(interval: float) -> float:
    """The longest silence between readings still integrated, for a sampling interval."""
    return max(GAP_INTERVALS * interval, MIN_GAP)


class EnergyIntegrator:
    """Joules from a stream of (monotonic seconds, watts) samples, trapezoid rule.

    With `max_gap`, a longer interval between readings is not integrated but
    counted in `uncovered_seconds`; without it every interval is integrated.
    """

    def __init__(self, max_gap: Optional[float] = None) -> None:
        self.joules = 0.0
        self.uncovered_seconds = 0.0
        self.max_gap = max_gap
        self._last_t = None  # type: Optional[float]
        self._last_w = 0.0

    def add(self, t: float, watts: float) -> None:
        if self._last_t is not None and t <= self._last_t:
            return  # the same (stale) reading again, or a clock that went back
        if self._last_t is not None:
            dt = t - self._last_t
            if self.max_gap is not None and dt > self.max_gap:
                self.uncovered_seconds += dt
            else:
                self.joules += (self._last_w + watts) / 2.0 * dt
        self._last_t, self._last_w = t, watts


class CounterEnergy:
    """Joules since start from a hardware energy counter that wraps at `wrap` raw units.

    `scale` converts raw units to joules (1e-6 for RAPL's microjoules, 1e-3 for
    NVML's millijoules). A reading lower than the last one is a wraparound when
    the counter has a range and (given `t` and `max_watts`) the wrapped
    increment fits max_watts * elapsed; anything else is a reset: the interval
    adds no joules, its seconds go to `uncovered_seconds`, and `reset` is True
    until the next reading.
    """

    def __init__(self, scale: float, wrap: Optional[int] = None, max_watts: Optional[float] = None) -> None:
        self.scale = scale
        self.wrap = wrap
        self.max_watts = max_watts
        self.joules = 0.0
        self.uncovered_seconds = 0.0
        self.reset = False
        self._last_raw = None  # type: Optional[int]
        self._last_t = None  # type: Optional[float]

    def add(self, raw: int, t: Optional[float] = None) -> float:
        """Take a new counter reading (at monotonic time t); return the joules since the previous one."""
        delta = 0
        self.reset = False
        elapsed = None if t is None or self._last_t is None else t - self._last_t
        if self._last_raw is not None:
            delta = raw - self._last_raw
            if delta < 0:
                wrapped = delta + self.wrap if self.wrap else None
                if wrapped is not None and (self.max_watts is None or elapsed is None
                                            or wrapped * self.scale <= self.max_watts * elapsed):
                    delta = wrapped
                else:
                    delta, self.reset = 0, True
                    self.uncovered_seconds += elapsed or 0.0
        self._last_raw, self._last_t = raw, t
        joules = delta * self.scale
        self.joules += joules
        return joules


def board_from_rails(rails_w: Dict[str, float]):
    """(board watts, board_rail, other rails): the input rail if there is one, else the sum."""
    for name in INPUT_RAILS:
        if name in rails_w:
            others = {k: v for k, v in rails_w.items() if k != name}
            return rails_w[name], name, others
    return sum(rails_w.values()), "sum", dict(rails_w)


class PowerMeter:
    """Board and rail power gauges plus their energy counters for one power source.

    `max_gap` is the integrators' gap limit (see module doc). `replay` marks a
    recorded log played back, `fallback_from` the source `--power-source auto`
    passed over for this one: both are labels of edgescope_power_source_info,
    so a demo or a fallback is never mistaken for the board's own source.
    """

    def __init__(self, source: str, max_gap: Optional[float] = None, replay: bool = False,
                 fallback_from: str = "") -> None:
        self.source = source
        self.max_gap = max_gap
        self.replay = replay
        self.fallback_from = fallback_from
        self.board_rail = ""
        self.board_watts = None  # type: Optional[float]
        self.rail_watts = {}  # type: Dict[str, float]
        self._board = EnergyIntegrator(max_gap)
        self._rails = {}  # type: Dict[str, EnergyIntegrator]
        self._board_counted = None  # type: Optional[float]
        self._rails_counted = {}  # type: Dict[str, float]
        self._uncovered_counted = 0.0

    def set_max_gap(self, max_gap: Optional[float]) -> None:
        """Change the gap limit (a source that learns its real reading interval only once connected)."""
        self.max_gap = self._board.max_gap = max_gap
        for integ in self._rails.values():
            integ.max_gap = max_gap

    def integrate(self, t: float, rails_w: Dict[str, float], board_w: Optional[float] = None,
                  board_rail: str = "") -> None:
        """Record one power reading at monotonic time t (rails and board in watts).

        Without board_w, the board is the input rail or the sum of rails.
        """
        if board_w is None:
            board_w, board_rail, rails_w = board_from_rails(rails_w)
        self.board_watts, self.board_rail, self.rail_watts = board_w, board_rail, dict(rails_w)
        self._board.add(t, board_w)
        for name, watts in rails_w.items():
            self._rails.setdefault(name, EnergyIntegrator(self.max_gap)).add(t, watts)

    def count(self, rails_w: Dict[str, float], rails_j: Dict[str, float], board_rail: str = "sum",
              board_w: Optional[float] = None, board_j: Optional[float] = None,
              uncovered_s: float = 0.0) -> None:
        """Record a reading from hardware energy counters: joules since start per rail.

        The board is the sum of the rails unless board_w/board_j name it
        directly; uncovered_s is the time since start the counters could not
        account for (intervals that ended in a counter reset).
        """
        self.rail_watts = dict(rails_w)
        self._rails_counted = dict(rails_j)
        self.board_rail = board_rail
        self.board_watts = sum(rails_w.values()) if board_w is None else board_w
        self._board_counted = sum(rails_j.values()) if board_j is None else board_j
        self._uncovered_counted = uncovered_s

    def samples(self) -> List[Sample]:
        if self.board_watts is None:
            return []
        counted = self._board_counted is not None
        board_j = self._board_counted if counted else self._board.joules
        info = {"source": self.source, "board_rail": self.board_rail,
                "replay": "true" if self.replay else "false", "fallback_from": self.fallback_from}
        out = [
            Sample("edgescope_power_source_info", info, 1.0),
            Sample("edgescope_board_power_watts", {}, self.board_watts),
            Sample("edgescope_board_energy_joules_total", {}, board_j),
            Sample("edgescope_board_energy_uncovered_seconds_total", {},
                   self._uncovered_counted if counted else self._board.uncovered_seconds),
        ]
        for name, watts in sorted(self.rail_watts.items()):
            out.append(Sample("edgescope_rail_power_watts", {"rail": name}, watts))
        energies = self._rails_counted if counted else {
            name: integ.joules for name, integ in self._rails.items()}
        for name, joules in sorted(energies.items()):
            out.append(Sample("edgescope_rail_energy_joules_total", {"rail": name}, joules))
        return out
