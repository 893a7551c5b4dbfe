"""The one way edgescope reads a YAML file: exporter settings, web config, experiment plans.

Whatever is wrong with the file (unreadable, not UTF-8, too large, bad syntax,
an alias bomb, a key given twice, nested too deep, not a mapping at the top) becomes one line that
names the file and the fix, raised as the caller's own error class, so each
command keeps its one-line-and-exit-2 promise without a traceback.
"""
from typing import Any, Dict, Set, Type

import yaml

from exporter.readfile import Unreadable, read_regular

MAX_BYTES = 1024 * 1024  # settings and plans are a few hundred lines at most
MAX_NODES = 100000  # scalars + collections after aliases are expanded ("billion laughs" stops here)


class _Refused(Exception):
    """The document parses but is not one edgescope reads; the message says why."""


def one_line(text: str) -> str:
    """`text` with newlines and other unprintable characters escaped, as repr() writes them:
    an error naming a path or a value the user typed stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _expanded_nodes(node: yaml.Node, counted: Dict[int, int], path: Set[int]) -> int:
    """How many nodes the document holds once every alias is expanded; _Refused early when
    that is too many, when an alias contains itself, or when a mapping repeats a key (YAML
    would silently keep the last one)."""
    key = id(node)
    if key in counted:
        return counted[key]
    if key in path:
        raise _Refused("an alias refers to itself (a recursive structure); write it out without such aliases")
    path.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
        seen = set()  # type: Set[str]
        for k, _ in node.value:
            if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                if k.value in seen:
                    raise _Refused("key {!r} appears twice in one mapping (line {}); keep one".format(
                        k.value, k.start_mark.line + 1))
                seen.add(k.value)
    else:
        children = []
    for child in children:
        total += _expanded_nodes(child, counted, path)
        if total > MAX_NODES:
            raise _Refused("more than {} values once its aliases are expanded; write it out without "
                           "such aliases".format(MAX_NODES))
    path.discard(key)
    counted[key] = total
    return total


def _parse(text: str) -> Any:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_nodes(node, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_mapping(path: str, flag: str, error: Type[Exception], what: str = "settings") -> Dict[Any, Any]:
    """The top-level mapping of the YAML file at `path` ({} for an empty file).

    `flag` is the option that named the file (e.g. "--config"; "" for a positional
    argument) and `what` says what the file holds ("settings", "plan"); every
    problem raises `error` with one line naming the file and what to do.
    """
    where = "{} {}".format(flag, path) if flag else path
    try:
        raw = read_regular(path, MAX_BYTES)
    except OSError as exc:
        raise error("{}: {}; cannot read the {}".format(where, exc.strerror or exc, what))
    except Unreadable as exc:
        raise error("{}: {}; is it the {} file?".format(path, exc, what))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        undecoded = exc.object  # without a BOM, which exc.start does not count
        line = undecoded[:exc.start].count(b"\n") + 1
        raise error("{}: not UTF-8 text (byte 0x{:02x} at line {}); save the {} as UTF-8".format(
            path, undecoded[exc.start], line, what))
    try:
        data = _parse(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = " at line {}".format(mark.line + 1) if mark else ""
        problem = " ({})".format(exc.problem) if exc.problem else ""
        raise error("{}: not valid YAML{}{}; fix the syntax there".format(path, at, problem))
    except _Refused as exc:
        raise error("{}: {}".format(path, exc))
    except RecursionError:
        raise error("{}: nested too deeply to be the {}; fix its structure".format(path, what))
    except (yaml.YAMLError, ValueError, OverflowError) as exc:  # e.g. an int of more digits than Python converts
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise error("{}: a value cannot be read ({}); fix that value".format(path, first[:100]))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error("{}: the top level must be a mapping of {} keys to values, not a {}".format(
            path, what, type(data).__name__))
    return data
