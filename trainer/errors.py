"""Bad input becomes one line on stderr: the exception the CLIs print, and
argparse pieces that raise it instead of printing usage and a traceback-free
but two-line error."""
import argparse


class UsageError(Exception):
    """Bad input (flag, path, port): the message names the problem and the fix."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError("{}; see --help".format(message))
