"""tegrastats lines that no board can produce are rejected whole, on any recorded board's line: a rail given
twice (summed, a Nano read 900 W), an input rail that is named but cannot be read (the other rails' sum would
pass for board power: 0.55 W instead of 2.55 W); RAM used above its total is never exposed."""
import re

import pytest
from hypothesis import given, settings, strategies as st

from exporter.energy import INPUT_RAILS
from exporter.metrics import exposable
from exporter.sources.tegrastats import BadLine, parse_line, stats_samples
from tests.exporter.conftest import tegrastats_lines

LINES = tegrastats_lines()
WITH_INPUT = sorted(k for k, line in LINES.items() if any(re.search(r"\b{} \d".format(r), line) for r in INPUT_RAILS))
RAIL = re.compile(r"(?<!\S)([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")


def test_the_fixtures_hold_input_rails():
    assert len(WITH_INPUT) >= 3


@settings(max_examples=100, deadline=None)
@given(key=st.sampled_from(WITH_INPUT), data=st.data())
def test_a_rail_given_twice_rejects_the_line(key, data):
    line = LINES[key]
    rails = [m.group(0) for m in RAIL.finditer(line) if m.group(1) not in ("RAM", "SWAP", "IRAM")]
    twice = data.draw(st.sampled_from(rails))
    with pytest.raises(BadLine, match="given twice"):
        parse_line(line + " " + twice)


@settings(max_examples=100, deadline=None)
@given(key=st.sampled_from(WITH_INPUT), junk=st.sampled_from(["x", "?", "-", ".", "mW", "e3", ",0"]))
def test_an_unreadable_input_rail_rejects_the_line_not_the_sum_of_the_others(key, junk):
    line = LINES[key]
    rail = next(r for r in INPUT_RAILS if re.search(r"\b{} \d".format(r), line))
    broken = re.sub(r"({} )(\d)".format(rail), r"\g<1>{}\g<2>".format(junk), line, count=1)
    assert broken != line
    with pytest.raises(BadLine):
        parse_line(broken)


@settings(max_examples=100, deadline=None)
@given(key=st.sampled_from(sorted(k for k in LINES if "RAM " in LINES[k])), used=st.integers(0, 10 ** 6),
       total=st.integers(0, 10 ** 6))
def test_ram_used_above_its_total_is_never_exposed(key, used, total):
    """At the exposition boundary, for every source (tegrastats and jtop send the same pair)."""
    line = re.sub(r"RAM \d+/\d+MB", "RAM {}/{}MB".format(used, total), LINES[key])
    kept, rejected = exposable(stats_samples(parse_line(line)))
    exposed = {s.name: s.value for s in kept}
    assert exposed["edgescope_memory_total_bytes"] == total * 1024 * 1024
    if used > total:
        assert "edgescope_memory_used_bytes" not in exposed
        assert "edgescope_memory_used_bytes: above edgescope_memory_total_bytes" in rejected
    else:
        assert exposed["edgescope_memory_used_bytes"] == used * 1024 * 1024
