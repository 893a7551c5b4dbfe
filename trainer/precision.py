"""Numbers printed with the digits their spread allows: a mean with a standard deviation of 0.4 is 12.3 ± 0.4,
not 12.345 ± 0.412. The spread keeps one significant digit (two when it starts with 1), the mean the same
decimal place. Torch-free: the report prints with it too."""
import math
from typing import Optional


def decimals(spread: float) -> int:
    """Decimal places that show ``spread`` to one significant digit (two for 1.x)."""
    if not spread > 0 or math.isinf(spread):
        return 3
    # The digits from the float's own scientific notation: dividing by 10 ** exponent underflows to zero for a
    # subnormal spread (5e-324), and its rounding already carries 0.96 into the next decade (1.0e+00).
    mantissa, exponent = "{:.1e}".format(spread).split("e")
    return max(0, -int(exponent) + (1 if float(mantissa) < 2 else 0))


def _significant(value: float, digits: int) -> int:
    """Decimal places that show ``value`` to ``digits`` significant digits."""
    if value == 0 or not math.isfinite(value):
        return digits - 1
    return max(0, digits - 1 - math.floor(math.log10(abs(value))))


def with_spread(mean: float, spread: Optional[float], unit: str = "", percent: bool = False) -> str:
    """``mean ± spread unit`` at the spread's precision; ``percent`` shows ratios as percentages."""
    scale = 100.0 if percent else 1.0
    unit = " %" if percent else (" " + unit if unit else "")
    sign = "+" if percent else ""
    if spread is None:  # one value: three significant digits
        return "{:{}.{}f}{}".format(mean * scale, sign, _significant(mean * scale, 3), unit)
    if spread == 0:  # identical values: the mean as such, four significant digits
        return "{:{}.{}f} ± 0{}".format(mean * scale, sign, _significant(mean * scale, 4), unit)
    places = decimals(spread * scale)
    return "{:{}.{}f} ± {:.{}f}{}".format(mean * scale, sign, places, spread * scale, places, unit)
