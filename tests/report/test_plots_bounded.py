"""A figure's size does not grow past MAX_DRAWN runs or rows: 3,000 runs with --plots took minutes and 2.75 GB
(a panel per run); past the bound the first ones are drawn and the figure says how many it left out."""
import matplotlib.pyplot as plt
from matplotlib.text import Text

from report import plots
from tests.report import synthetic


def test_figures_stop_growing_at_the_drawn_bound_and_say_so(monkeypatch):
    monkeypatch.setattr(plots, "MAX_DRAWN", 3)
    sizes = {}
    for count in (3, 9):
        runs = [synthetic.run(k, epochs=2, run_id="r{}".format(k), info={"workers": str(k)}) for k in range(count)]
        report = synthetic.report(runs)
        with plt.rc_context(plots.STYLE):
            made = plots.figures(runs, report)
        try:
            sizes[count] = {name: tuple(fig.get_size_inches()) for name, fig in made.items()}
            texts = {name: " ".join(t.get_text() for t in fig.findobj(Text)) for name, fig in made.items()}
        finally:
            for fig in made.values():
                plt.close(fig)
        for name in ("time_split", "energy_per_epoch", "power_over_run"):
            said = "showing the first 3 of" in texts[name]
            assert said == (count > 3), (count, name)
        assert len(made["power_over_run"].axes) == 3
    assert sizes[9] == sizes[3]
