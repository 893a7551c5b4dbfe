"""Bad input becomes one line on stderr: the exception the CLIs print, and
argparse pieces that raise it instead of printing usage and a traceback-free
but two-line error."""
import argparse
from typing import Callable


class UsageError(Exception):
    """Bad input (flag, path, port): the message names the problem and the fix."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError("{}; see --help".format(message))


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= minimum."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("{!r} is not an integer".format(text))
        if value < minimum:
            raise argparse.ArgumentTypeError("{} is below the minimum {}".format(value, minimum))
        return value
    return parse
