"""Labels are drawn as plain text: run ids, devices, models and settings holding matplotlib math markup
("$...$", backslash commands, a lone "$") are drawn as written, never parsed (a bad one killed savefig)."""
import matplotlib.pyplot as plt
from hypothesis import Phase, given, settings, strategies as st
from matplotlib.text import Text

from report.plots import STYLE, figures, png_images
from tests.report import synthetic

MARKUP = st.text(alphabet="$\\^_{}ab ", min_size=1, max_size=12) | st.sampled_from(
    ["$\\frac{", "a$\\b$", "$x^$", "\\$", "$$", "x\\$y$z", "\\mathbf{1}$", "$\\undefinedcommand$"])


def labelled_runs(run_id, device, model, workers):
    runs = [synthetic.run(k, run_id="{}-{}".format(run_id, k), info={"model": model, "workers": workers + str(k)})
            for k in range(2)]
    for run in runs:
        run.device = device
    return runs


@settings(max_examples=12, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no slow shrink
@given(run_id=MARKUP, device=MARKUP, model=MARKUP, workers=MARKUP)
def test_labels_with_math_markup_are_drawn_as_written(run_id, device, model, workers):
    runs = labelled_runs(run_id, device, model, workers)
    report = synthetic.report(runs)
    assert set(png_images(runs, report)) >= {"time_split", "energy_per_epoch", "power_over_run"}  # savefig ran
    with plt.rc_context(STYLE):
        made = figures(runs, report)
        try:
            for name, fig in made.items():
                fig.canvas.draw()  # tick labels take their text at draw time
                drawn = [t._preprocess_math(t.get_text()) for t in fig.findobj(Text) if t.get_text()]
                assert not [text for text, math in drawn if math], "parsed as math: {}".format(drawn)
                shown = " ".join(text for text, _ in drawn)
                assert name != "energy_per_epoch" or "{}-0 ({})".format(run_id, device) in shown, shown
        finally:
            for fig in made.values():
                plt.close(fig)


def test_a_run_id_starting_with_an_underscore_keeps_its_legend_entry():
    """matplotlib leaves labels starting with "_" out of a legend: such a run id must still be in it."""
    runs = labelled_runs("_run", "nano", "vgg11", "2")
    with plt.rc_context(STYLE):
        fig = figures(runs, synthetic.report(runs))["energy_per_epoch"]
        try:
            legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        finally:
            plt.close(fig)
    assert any("_run-0 (nano)" in text for text in legend), legend
