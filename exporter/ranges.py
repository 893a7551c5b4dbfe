"""Physical ranges: what a Jetson (or any board edgescope watches) can produce, in one table for the
exporter (the exposition boundary, tegrastats lines) and the report (per-epoch figures).

A number outside its range is a misread, a broken counter or hostile input, not a measurement: the exporter
drops it before /metrics (counted in edgescope_source_rejected_samples_total), the report shows it as missing
with a note. Neither clips it: a clipped 500 % would read as a real 100 %.
"""
import math
from typing import NamedTuple, Optional


class Range(NamedTuple):
    low: float
    high: float
    why: str  # what bounds it, for docs/security.md and the notes


# No quantity edgescope reports comes near this in base units (an exabyte, 30 billion years).
MAX_MAGNITUDE = 1e18
RATIO = Range(0.0, 1.0, "a share of time or of pages: 0 to 100 %")
CELSIUS = Range(-40.0, 150.0, "Jetson modules are rated -25..105 °C (industrial -40..85); beyond is a misread")
NON_NEGATIVE = Range(0.0, MAX_MAGNITUDE, "a duration, count, size, energy or rate never is negative")
ANY = Range(-MAX_MAGNITUDE, MAX_MAGNITUDE, "finite and below an exabyte")
RAIL_WATTS = Range(0.0, 1000.0, "a Jetson module draws at most ~75 W (AGX Orin, MAXN)")
# Board input power by device_type label: about twice the highest power mode, so peaks pass but a rail read
# twice or a misplaced decimal does not (a Nano's supply gives 20 W at most).
BOARD_WATTS = {
    "nano": 25.0, "tx2": 40.0, "xavier-nx": 40.0, "orin-nano": 50.0, "orin-nx": 80.0,
    "agx-xavier": 100.0, "agx-orin": 150.0,
}
# By metric-name suffix on the exporter's side; a name with none of them is only bounded by ANY.
UNIT_RANGES = (
    ("_ratio", RATIO),
    ("_celsius", CELSIUS),
    ("_total", NON_NEGATIVE),
    ("_bytes", NON_NEGATIVE),
    ("_watts", NON_NEGATIVE),  # x86 hosts (RAPL, NVML) draw more than a Jetson; tegrastats rails: RAIL_WATTS
    ("_hertz", NON_NEGATIVE),
    ("_seconds", NON_NEGATIVE),  # durations, intervals and timestamps
)


# A part is never more than its whole: RAM or swap in use above its total is a misread (tegrastats, jtop alike).
# The GPU's share of a Jetson's RAM (nvmap) is RAM too.
AT_MOST = {"edgescope_memory_used_bytes": "edgescope_memory_total_bytes",
           "edgescope_gpu_memory_bytes": "edgescope_memory_total_bytes",
           "edgescope_swap_used_bytes": "edgescope_swap_total_bytes"}


def board_watts(device_type: Optional[str]) -> Range:
    """The input power a board of ``device_type`` can draw (any board's rail bound if the type is unknown)."""
    high = BOARD_WATTS.get(device_type or "")
    return RAIL_WATTS if high is None else Range(0.0, high, "a {} draws at most ~{:g} W".format(device_type, high / 2))


def unit_range(name: str) -> Range:
    """The range of the exporter metric ``name``, by its unit suffix."""
    return next((r for suffix, r in UNIT_RANGES if name.endswith(suffix)), ANY)


def outside(value: float, allowed: Range) -> Optional[str]:
    """Why ``value`` is no physical ``allowed`` value ("not finite", "outside 0..1"), None if it is one."""
    if not math.isfinite(value):
        return "not finite"
    if not allowed.low <= value <= allowed.high:
        return "outside {:g}..{:g}".format(allowed.low, allowed.high)
    return None
