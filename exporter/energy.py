"""Power to energy, the way the reference method defines it.

Energy = sum over samples of P(t_i) * (t_i - t_{i-1}) on a monotonic clock:
the power read at t_i stands for the interval that ends at t_i, and the first
sample opens the window without adding energy. Where hardware keeps an energy
counter (NVML, RAPL) the counter's increments are used instead, across
wraparound. `PowerMeter` is what every power source keeps: it turns each
power reading into the board/rail gauges and energy counters of the contract.
"""
from typing import Dict, List, Optional

from exporter.metrics import Sample

INPUT_RAILS = ("VDD_IN", "POM_5V_IN")  # the board's input rail, where it has one (jtop's rule)


class EnergyIntegrator:
    """Joules from a stream of (monotonic seconds, watts) samples."""

    def __init__(self) -> None:
        self.joules = 0.0
        self._last_t = None  # type: Optional[float]

    def add(self, t: float, watts: float) -> None:
        if self._last_t is not None and t > self._last_t:
            self.joules += watts * (t - self._last_t)
        self._last_t = t


class CounterEnergy:
    """Joules since start from a hardware energy counter that wraps at `wrap` raw units.

    `scale` converts raw units to joules (1e-6 for RAPL's microjoules, 1e-3 for
    NVML's millijoules). A reading lower than the last one is a wraparound.
    """

    def __init__(self, scale: float, wrap: Optional[int] = None) -> None:
        self.scale = scale
        self.wrap = wrap
        self.joules = 0.0
        self._last_raw = None  # type: Optional[int]

    def add(self, raw: int) -> float:
        """Take a new counter reading; return the joules since the previous one."""
        delta = 0
        if self._last_raw is not None:
            delta = raw - self._last_raw
            if delta < 0:
                if not self.wrap:
                    raise ValueError("energy counter went backwards ({} -> {}) and has no known range".format(self._last_raw, raw))
                delta += self.wrap
        self._last_raw = raw
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
    """Board and rail power gauges plus their energy counters for one power source."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.board_rail = ""
        self.board_watts = None  # type: Optional[float]
        self.rail_watts = {}  # type: Dict[str, float]
        self._board = EnergyIntegrator()
        self._rails = {}  # type: Dict[str, EnergyIntegrator]
        self._board_counted = None  # type: Optional[float]
        self._rails_counted = {}  # type: Dict[str, float]

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
            self._rails.setdefault(name, EnergyIntegrator()).add(t, watts)

    def count(self, rails_w: Dict[str, float], rails_j: Dict[str, float], board_rail: str = "sum",
              board_w: Optional[float] = None, board_j: Optional[float] = None) -> None:
        """Record a reading from hardware energy counters: joules since start per rail.

        The board is the sum of the rails unless board_w/board_j name it directly.
        """
        self.rail_watts = dict(rails_w)
        self._rails_counted = dict(rails_j)
        self.board_rail = board_rail
        self.board_watts = sum(rails_w.values()) if board_w is None else board_w
        self._board_counted = sum(rails_j.values()) if board_j is None else board_j

    def samples(self) -> List[Sample]:
        if self.board_watts is None:
            return []
        board_j = self._board.joules if self._board_counted is None else self._board_counted
        out = [
            Sample("edgescope_power_source_info", {"source": self.source, "board_rail": self.board_rail}, 1.0),
            Sample("edgescope_board_power_watts", {}, self.board_watts),
            Sample("edgescope_board_energy_joules_total", {}, board_j),
        ]
        for name, watts in sorted(self.rail_watts.items()):
            out.append(Sample("edgescope_rail_power_watts", {"rail": name}, watts))
        energies = self._rails_counted if self._board_counted is not None else {
            name: integ.joules for name, integ in self._rails.items()}
        for name, joules in sorted(energies.items()):
            out.append(Sample("edgescope_rail_energy_joules_total", {"rail": name}, joules))
        return out
