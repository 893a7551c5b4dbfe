"""The plots' text as matplotlib's renderer lays it out in the saved figure:
inside the canvas (no clipped title, label or legend), tick labels that do not
overlap with 20 comparison rows, and settings shared by every row said once
instead of in every tick label."""
import contextlib
import itertools

import matplotlib.pyplot as plt
import pytest
from matplotlib.text import Text

from report.collect import Collected
from report.plots import DPI, STYLE, figures, pareto_front, row_labels
from report.render import build
from tests.report import synthetic


@contextlib.contextmanager
def laid_out(runs):
    """The figures drawn at the saved resolution, so text sits where savefig puts it."""
    report = synthetic.report(runs)
    with plt.rc_context(STYLE):
        made = figures(runs, report)
        for fig in made.values():
            fig.set_dpi(DPI)
            fig.canvas.draw()
    try:
        yield made
    finally:
        for fig in made.values():
            plt.close(fig)


@pytest.fixture(scope="module", params=[1, 3, 20], ids=lambda n: "{}runs".format(n))
def drawn(request):
    runs = [synthetic.run(k) for k in range(request.param)]
    with laid_out(runs) as made:
        yield made


def in_view_ticks(axis):
    """The major ticks matplotlib draws: those inside the axis' view interval."""
    low, high = sorted(axis.get_view_interval())
    return [t for t in axis.get_major_ticks() if low <= t.get_loc() <= high]


def drawn_texts(fig):
    """(text, window extent) of every non-empty text the figure draws: titles, axis and tick labels,
    legends, annotations; tick labels of ticks outside the view are never drawn and left out."""
    renderer = fig.canvas.get_renderer()
    undrawn = {id(t.label1) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
               for t in axis.get_major_ticks() + axis.get_minor_ticks() if t not in in_view_ticks(axis)}
    return [(t.get_text(), t.get_window_extent(renderer)) for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip() and id(t) not in undrawn]


def test_no_text_leaves_the_canvas(drawn):
    for name, fig in drawn.items():
        width, height = fig.bbox.width, fig.bbox.height
        for content, box in drawn_texts(fig):
            assert box.x0 >= -0.5 and box.y0 >= -0.5 and box.x1 <= width + 0.5 and box.y1 <= height + 0.5, \
                "{}: {!r} at {} is outside the {:.0f}x{:.0f} canvas".format(name, content, box.bounds, width, height)


def test_tick_labels_do_not_overlap(drawn):
    renderer = next(iter(drawn.values())).canvas.get_renderer()
    for name, fig in drawn.items():
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                boxes = [(t.label1.get_text(), t.label1.get_window_extent(renderer)) for t in in_view_ticks(axis)
                         if t.label1.get_visible() and t.label1.get_text()]
                for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
                    assert not box_a.overlaps(box_b), "{}: tick labels {!r} and {!r} overlap".format(name, a, b)


def test_twenty_rows_are_labelled_by_what_differs_only():
    runs = [synthetic.run(k) for k in range(20)]
    with laid_out(runs) as made:
        (ax,) = made["time_split"].axes
        labels = [t.get_text().replace("\n", " ") for t in ax.get_yticklabels()]
        assert len(labels) == 20 and len(set(labels)) == 20
        # model, dataset, prefetch and pin_memory are the same in every run: said once, in the title
        assert not any(s in label for label in labels for s in ("vgg11", "cifar10", "prefetch", "pin_memory"))
        assert all("workers=" in label and "batch_size=" in label for label in labels)
        title = made["time_split"]._suptitle.get_text().replace("\n", " ")
        assert "common to all rows: dataset=cifar10 model=vgg11 pin_memory=false prefetch_factor=2" in title


def test_row_labels_factor_out_what_every_row_shares():
    report = synthetic.report([synthetic.run(0), synthetic.run(2), synthetic.run(20, info={"model": "resnet18"})])
    common, labels = row_labels(report["comparison"])
    assert common == "batch_size=16 dataset=cifar10 device=nano-1 device_type=nano pin_memory=false " \
                     "prefetch_factor=2 storage=sd"
    assert labels == ["resnet18 workers=1", "vgg11 workers=1", "vgg11 workers=2"]
    single = synthetic.report([synthetic.run(0)])
    assert row_labels(single["comparison"])[1] == ["nano-1"]


def test_labels_holding_dollars_are_drawn_as_text():
    """Run ids and settings come from Prometheus: text between two $ must not be typeset as mathtext (a run id
    holding \\x would not draw at all)."""
    runs = [synthetic.run(0, run_id=r"sweep $\x$ 1", info={"model": r"$\y$"}), synthetic.run(1)]
    report = build(Collected(runs=runs, notes=[]), 1, {"prometheus": "http://prometheus.example:9090",
                                                       "since": 0.0, "until": 2e9, "pareto": True})
    with plt.rc_context(STYLE):
        made = figures(runs, report)
        try:
            for fig in made.values():
                fig.canvas.draw()
            shown = [t._preprocess_math(t.get_text()) for fig in made.values() for t in fig.findobj(Text)]
        finally:
            for fig in made.values():
                plt.close(fig)
    assert set(made) == {"time_split", "energy_per_epoch", "power_over_run", "pareto"}
    assert not any(math for _, math in shown)
    assert any(r"sweep $\x$ 1" in text for text, _ in shown) and any(r"$\y$" in text for text, _ in shown)


def test_an_under_measured_configuration_is_marked_on_the_pareto_plot():
    runs = [synthetic.run(0, epochs=2), synthetic.run(2)]  # one board and model; the first keeps one epoch
    report = build(Collected(runs=runs, notes=[]), 1, {"prometheus": "http://prometheus.example:9090",
                                                       "since": 0.0, "until": 2e9, "pareto": True})
    with plt.rc_context(STYLE):
        fig = pareto_front(report)
        try:
            (ax,) = fig.axes
            legend = [t.get_text() for t in ax.get_legend().get_texts()]
        finally:
            plt.close(fig)
    assert [p["under_measured"] for p in report["pareto"][0]["points"]] == [True, False]
    assert "under-measured (one epoch: no spread, fits no budget)" in legend
