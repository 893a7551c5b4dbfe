"""Property tests: the tegrastats parser and reader on arbitrary text and on mutated real lines.

Whatever a line holds, parsing either gives numbers or refuses the line with
BadLine; nothing else escapes, and what reaches /metrics is finite and in range.
"""
import math

import pytest
from hypothesis import given, settings, strategies as st

from exporter.metrics import exposable, value_problem
from exporter.sources.base import SourceDown
from exporter.sources.tegrastats import MAX_LINE, BadLine, TegrastatsSource, parse_line, stats_samples
from tests.exporter.conftest import tegrastats_lines

REAL = sorted(tegrastats_lines().values())
# Pieces of the format a mutation splices in: the characters the regexes key on, and absurd numbers.
PIECES = st.sampled_from(["-", "[", "]", "@", "%", "C", "mW", "/", " ", ",", ".", "off", "NC", "VDD_IN", "CPU [",
                          "9" * 400, "-256", "\x00", "\udcff", "\u00e9", "\n", "RAM ", "@[", "0" * 50])


@st.composite
def mutated_lines(draw):
    line = draw(st.sampled_from(REAL))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(line)))
        cut = draw(st.integers(0, 6))
        line = line[:at] + draw(st.one_of(PIECES, st.text(max_size=5))) + line[at + cut:]
    return line


def check_parse(line):
    try:
        parsed = parse_line(line)
    except BadLine as e:
        assert str(e)  # a reason, no traceback
        return
    for value in list(parsed.rails_w.values()) + list(parsed.temps_c.values()) + list(parsed.cpu_busy) + [
            parsed.gpu_busy, parsed.emc_busy, parsed.emc_hz, parsed.ram_used, parsed.ram_total,
            parsed.swap_used, parsed.swap_total]:
        assert value is None or isinstance(value, float)
    assert all(0 <= w <= 1000 for w in parsed.rails_w.values())  # rails out of range reject the line
    kept, _ = exposable(stats_samples(parsed))
    for s in kept:
        assert math.isfinite(s.value) and value_problem(s.name, s.value) is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=600))
def test_arbitrary_text_parses_or_is_refused(line):
    check_parse(line)


@settings(max_examples=200, deadline=None)
@given(mutated_lines())
def test_mutated_real_lines_parse_or_are_refused(line):
    check_parse(line)


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet="CPU [%@0123456789,]-/mW VDD_IN", min_size=1, max_size=40))
def test_longest_allowed_lines_of_a_repeated_piece(piece):
    """A piece of format characters repeated up to MAX_LINE: the shape that made a regex quadratic."""
    check_parse((piece * (MAX_LINE // len(piece) + 1))[:MAX_LINE])


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    """A running source (one real line replayed slowly) whose line handling the properties drive directly."""
    path = tmp_path_factory.mktemp("replay") / "one.log"
    path.write_text(REAL[0] + "\n")
    src = TegrastatsSource(3600.0, str(path))
    yield src
    src.close()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(mutated_lines(), st.sampled_from(REAL)), min_size=1, max_size=5))
def test_the_reader_takes_any_line_and_exposes_only_valid_values(reader, lines):
    for line in lines:
        reader._take(line)  # what the reader thread does with each line: it must never raise
        try:
            samples = reader.sample()
        except SourceDown as e:
            assert str(e).startswith(("last tegrastats line rejected: ", "no tegrastats line"))
            continue
        kept, _ = exposable(samples)
        assert all(math.isfinite(s.value) for s in kept)
