"""Bad input becomes one line on stderr: the exception the CLIs print, and
argparse pieces that raise it instead of printing usage and a traceback-free
but two-line error."""
import argparse
import math
from typing import Any, Callable


class UsageError(Exception):
    """Bad input (flag, path, port): the message names the problem and the fix."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError("{}; see --help".format(message))


def number_in(low: float, high: float, kind: Callable[[str], Any] = float,
              above: bool = False) -> Callable[[str], Any]:
    """argparse type: a ``kind`` (float or int) from ``low`` (excluded if ``above``) to ``high``; nan and the
    infinities never are one, so a flag cannot carry them into arithmetic that fails later with a traceback."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("{!r} is not {}".format(
                text, "an integer" if kind is int else "a number"))
        if not ((kind is int or math.isfinite(value)) and (value > low if above else value >= low) and value <= high):
            raise argparse.ArgumentTypeError("{} must be a finite {} {} {:.10g}{}".format(
                text, "integer" if kind is int else "number", ">" if above else ">=", low,
                "" if high == math.inf else " and <= {:.10g}".format(high)))
        return value
    return parse


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= minimum."""
    return number_in(minimum, math.inf, int)
