"""The one exception type the CLIs turn into a single line on stderr."""


class UsageError(Exception):
    """Bad input (flag, path, port): the message names the problem and the fix."""
