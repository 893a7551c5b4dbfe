"""Text output (table, markdown, warnings) shows label values escaped: NUL, BEL, a newline or U+202E in a run
id, device or setting from Prometheus reached the terminal raw (a bell, a reversed line, a forged row)."""
from hypothesis import given, settings, strategies as st

from report.render import render
from tests.report import synthetic

HOSTILE = st.text(alphabet=st.sampled_from("ab \x00\x07\x1b\n\r\t\u202e\u2066\u200f\x85\u2028"), min_size=1,
                  max_size=6)


@settings(max_examples=25, deadline=None)
@given(run_id=HOSTILE, device=HOSTILE, setting=HOSTILE)
def test_every_character_of_a_text_report_is_visible(run_id, device, setting):
    runs = [synthetic.run(k, epochs=2, run_id=run_id + str(k), info={"workers": setting + str(k)}) for k in range(2)]
    for run in runs:
        run.device = device
    report = synthetic.report(runs, notes=["note about " + run_id])
    for fmt in ("table", "markdown"):
        text = render(report, fmt)
        hidden = {c for line in text.split("\n") for c in line if not c.isprintable()}
        assert not hidden, (fmt, hidden)
        assert repr(run_id + "0")[1:-1].replace("\\'", "'") in text, fmt
