"""The argument types every command line shares: text that can become a label or a URL, and numbers within
bounds. A bad value is an argparse error, which the commands print as one line naming the flag."""
import argparse
import math
from typing import Any, Callable


def docs_epilog(page: str) -> str:
    """The line every command's --help ends with: the page under docs/ that explains the command (the same
    Markdown file in a checkout, on GitHub and in the built site)."""
    return "Docs: docs/{}".format(page)


def utf8_argument(text: str) -> str:
    """argparse type for a value bound for a label, a URL or a PromQL match: Prometheus only knows UTF-8
    (a command line may hold any bytes), and a control character would break the one-line errors and tables."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("{!r} is not valid UTF-8; use UTF-8 text (Prometheus labels and URLs "
                                         "are)".format(text))
    if not text.isprintable():
        raise argparse.ArgumentTypeError("{!r} holds a control character".format(text))
    return text


def number_in(low: float, high: float, kind: Callable[[str], Any] = float,
              above: bool = False, why: str = "") -> Callable[[str], Any]:
    """argparse type: a ``kind`` (float or int) from ``low`` (excluded if ``above``) to ``high``; nan and the
    infinities never are one, so a flag cannot carry them into arithmetic that fails later with a traceback.
    ``why`` (what the bounds come from) ends the error."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("{!r} is not {}".format(
                text, "an integer" if kind is int else "a number"))
        if not ((kind is int or math.isfinite(value)) and (value > low if above else value >= low) and value <= high):
            raise argparse.ArgumentTypeError("{} must be a finite {} {} {:.10g}{}{}".format(
                text, "integer" if kind is int else "number", ">" if above else ">=", low,
                "" if high == math.inf else " and <= {:.10g}".format(high), " ({})".format(why) if why else ""))
        return value
    return parse


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= minimum."""
    return number_in(minimum, math.inf, int)
