"""Numbers with the digits their spread allows (trainer/precision.py), used by the trainer's summary and the
report's what-ifs."""
import pytest

from trainer.precision import decimals, with_spread


@pytest.mark.parametrize("mean, spread, text", [
    (12.345, 0.42, "12.3 ± 0.4 s"),
    (12.345, 3.1, "12 ± 3 s"),
    (12.345, 0.15, "12.35 ± 0.15 s"),  # a leading 1 keeps two digits
    (0.1234, 0.0152, "0.123 ± 0.015 s"),
    (12.345, 0.96, "12.3 ± 1.0 s"),  # rounds up into the next decade
    (23.5, 0.0, "23.50 ± 0 s"),
    (2.04, None, "2.04 s"),  # n = 1: no spread to show, three significant digits
    (4.0, None, "4.00 s"),
    (0.5, None, "0.500 s"),
])
def test_the_spread_sets_the_digits(mean, spread, text):
    assert with_spread(mean, spread, "s") == text


def test_ratios_as_signed_percentages():
    assert with_spread(-0.017, 0.018, percent=True) == "-1.7 ± 1.8 %"
    assert with_spread(0.094, 0.021, percent=True) == "+9 ± 2 %"


@pytest.mark.parametrize("spread", [float("nan"), float("inf"), -1.0])
def test_a_spread_that_is_no_number_falls_back_to_three_places(spread):
    assert decimals(spread) == 3


@pytest.mark.parametrize("spread, places", [
    (5e-324, 324), (2.2e-308, 308), (1.7e308, 0), (1e-3, 4), (9.96e-3, 3), (1.96, 0)])
def test_any_positive_float_spread_gets_its_places(spread, places):
    """The smallest subnormal (5e-324, found by the report's property test) once divided by zero."""
    assert decimals(spread) == places
