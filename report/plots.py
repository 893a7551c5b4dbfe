"""Paper-ready PNG figures: the time split per device and configuration
(stacked bars), energy per epoch, and board power over each run.

Every figure is laid out by matplotlib's constrained layout and long titles
are wrapped to the figure's width, so no text is cut off at the canvas edge;
the time split shows per row only the settings that differ between rows (as
the comparison table does) and grows with its rows so their labels never
overlap."""
import base64
import io
import os
import textwrap
from typing import Dict, List, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from exporter import atomicfile  # noqa: E402
from report.collect import Run  # noqa: E402
from report.configuration import WORKLOAD  # noqa: E402
from report.render import configuration_text, split_configuration  # noqa: E402

# Okabe–Ito: distinguishable with colour-vision deficiency and in greyscale print.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "figure.dpi": 100,
         "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
         "axes.axisbelow": True, "figure.titlesize": 10}
DPI = 200
REPLAYED_COLOR = PALETTE[3]  # the Pareto plot's crosses for replayed power: a colour no other point there has
WIDTH_INCHES = 7.0
# Characters of 10 pt text that fit one inch (DejaVu Sans averages ~0.55 em a
# character): how wide a title may be before it is wrapped.
CHARACTERS_PER_INCH = 12
LABEL_CHARACTERS = 40  # a row label longer than this wraps onto more lines
LINE_INCHES = 0.16  # height of one 9 pt tick label line, with spacing
# Row identity shown in the time split's labels as bare values; every other
# setting is shown as key=value.
IDENTITY = ("device", "device_type", "storage", "model")
MAX_DRAWN = 40  # runs or comparison rows one figure draws (a panel each: 40 is 60 inches of power plots)


def _figure(height: float, panels: int = 1) -> Tuple[Figure, list]:
    fig, axes = plt.subplots(panels, 1, figsize=(WIDTH_INCHES, height), squeeze=False, constrained_layout=True)
    return fig, list(axes[:, 0])


def colors(n: int) -> list:
    """n colours told apart: Okabe–Ito up to 8, else viridis in order (bars and legend read in the same order)."""
    if n <= len(PALETTE):
        return PALETTE[:n]
    return [plt.get_cmap("viridis")(i / (n - 1)) for i in range(n)]


def plain(text: str) -> str:
    """``text`` drawn as it is: matplotlib reads what lies between two "$" as math (a run id, label or path
    such as "a$\\b$" made savefig raise ParseException), and reads "\\$" as a literal "$". Applied once, where
    a text is handed to matplotlib; with no math left, backslashes are drawn as they are. A legend leaves out
    labels that start with "_" (a run id may): a zero-width space in front keeps them, drawn as written."""
    text = text.replace("$", r"\$")
    return "\u200b" + text if text.startswith("_") else text


def _wrapped(text: str, fig: Figure) -> str:
    """A title wrapped to the figure's width, drawn as plain text."""
    return plain("\n".join(textwrap.wrap(text, int(fig.get_figwidth() * CHARACTERS_PER_INCH))))


def row_labels(rows: Sequence[dict]) -> Tuple[str, List[str]]:
    """What every comparison row shares (one line) and, per row, only what
    differs: device, type, storage and model as values, settings and how they
    were measured as key=value (a lone row is labelled with its device)."""
    described = [{"configuration": dict(r["configuration"], **r.get("measured_as", {}),
                                        **{k: r[k] for k in IDENTITY if r.get(k)})} for r in rows]
    common, varying = split_configuration(described)
    labels = []
    for row, v in zip(rows, varying):
        identity = [v.pop(k) for k in IDENTITY if k in v]
        text = " ".join(identity + [configuration_text(v)]).strip() or row["device"]  # a single row
        labels.append("\n".join(textwrap.wrap(text, LABEL_CHARACTERS)))
    return configuration_text(common), labels


def time_split(report: dict) -> Figure:
    """Horizontal stacked bars, one row per comparison row, top to bottom in the table's order."""
    rows = report["comparison"]
    common, labels = row_labels(rows)
    lines = sum(label.count("\n") + 1 for label in labels)
    fig, (ax,) = _figure(2.2 + LINE_INCHES * max(lines, 1.6 * len(rows)))
    ys = list(range(len(rows)))
    stall = [r["fetch_stall_seconds"]["mean"] for r in rows]
    compute = [r["compute_seconds"]["mean"] for r in rows]
    e2e = [r["e2e_seconds"]["mean"] for r in rows]
    e2e_std = [r["e2e_seconds"]["std"] or 0.0 for r in rows]
    known = [s is not None and c is not None and e is not None for s, c, e in zip(stall, compute, e2e)]
    c_ = [c if k else 0.0 for c, k in zip(compute, known)]
    s_ = [s if k else 0.0 for s, k in zip(stall, known)]
    other = [max(e - s - c, 0.0) if k else 0.0 for e, s, c, k in zip(e2e, s_, c_, known)]
    ax.barh(ys, c_, height=0.6, color=PALETTE[0], label="compute")
    ax.barh(ys, s_, height=0.6, left=c_, color=PALETTE[1], label="fetch stall")
    ax.barh(ys, other, height=0.6, left=[a + b for a, b in zip(c_, s_)], color="#BBBBBB",
            label="other (E2E − stall − compute)")
    ax.errorbar([e for e, k in zip(e2e, known) if k], [y for y, k in zip(ys, known) if k],
                xerr=[d for d, k in zip(e2e_std, known) if k], fmt="none", ecolor="black", capsize=3,
                linewidth=0.8, label="E2E ± std")
    for y, k in zip(ys, known):
        if not k:
            ax.text(0, y, " missing", ha="left", va="center", fontsize=8)
    ax.set_yticks(ys)
    ax.set_yticklabels([plain(label) for label in labels])
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first row on top, as in the table
    ax.yaxis.grid(False)
    ax.set_xlabel("time per epoch (s)")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, frameon=False, borderaxespad=0.2)
    title = "Where an epoch's time goes: mean over epochs ≥ {}".format(report["settings"]["warmup_epochs"])
    fig.suptitle(_wrapped(title + "; common to all rows: " + (common or "nothing"), fig))
    return fig


def energy_per_epoch(runs: Sequence[Run], report: dict) -> Figure:
    warmup = report["settings"]["warmup_epochs"]
    fig, (ax,) = _figure(max(3.6, 1.2 + LINE_INCHES * (len(runs) + 1)))
    width = 0.8 / max(1, len(runs))
    handles = []
    for i, (run, color) in enumerate(zip(runs, colors(len(runs)))):
        for e in run.epochs:
            x = e.epoch - 0.4 + width * (i + 0.5)
            if e.energy_joules is None:
                ax.text(x, 0, "n/a", ha="center", va="bottom", rotation=90, fontsize=7)
                continue
            warm = e.epoch < warmup
            ax.bar(x, e.energy_joules, width=width * 0.95, color="white" if warm else color, edgecolor=color,
                   hatch="////" if warm else None, linewidth=0.8)
        known = any(e.energy_joules is not None for e in run.epochs)
        handles.append(Patch(facecolor=color, edgecolor=color, label=plain("{} ({}){}".format(
            run.run_id, run.device, ": REPLAYED power, not measured" if run.power_replayed and known
            else "" if known else ": no energy data"))))
    if warmup > 0:
        handles.append(Patch(facecolor="white", edgecolor="grey", hatch="////", label="warm-up, not averaged"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("board energy per epoch (J)")
    ax.set_title("Energy per epoch" + (" (REPLAYED power, not measured: see the legend)"
                                       if any(r.power_replayed for r in runs) else ""))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig


def power_over_run(runs: Sequence[Run]) -> Figure:
    """One panel per run: board power, the epochs as alternating bands and
    each epoch's average power (energy / duration) as a dashed step."""
    color_of = {id(run): color for run, color in zip(runs, colors(len(runs)))}  # each run as in the energy plot
    shown = [r for r in runs if any(e.start is not None for e in r.epochs)]
    fig, axes = _figure(0.6 + 1.5 * max(1, len(shown)), max(1, len(shown)))
    for ax, run in zip(axes, shown):
        color = color_of[id(run)]
        timed = [e for e in run.epochs if e.start is not None and e.end is not None]
        t0 = min(e.start for e in timed)  # type: ignore
        t1 = max(e.end for e in timed)  # type: ignore
        for e in timed:
            if e.epoch % 2 == 0:
                ax.axvspan(e.start - t0, e.end - t0, color="#EEEEEE", zorder=0, linewidth=0)
            if e.average_power_watts is not None:
                ax.hlines(e.average_power_watts, e.start - t0, e.end - t0, colors="black", linestyles="--",
                          linewidth=0.9)
        inside = [(t - t0, w) for t, w in run.power if t0 <= t <= t1]
        if inside:
            ax.plot([t for t, _ in inside], [w for _, w in inside], color=color, linewidth=1.0)
            ax.set_ylim(0, 1.15 * max(w for _, w in inside))
        else:
            ax.text(0.5, 0.5, "no board power data", transform=ax.transAxes, ha="center", va="center")
            ax.set_yticks([])
        ax.set_xlim(0, t1 - t0)
        ax.set_ylabel("W")
        ax.set_title(_wrapped("{} ({}, {}){}".format(run.run_id, run.device, run.model or "?",
                                                     ": REPLAYED power, not measured"  # the curve: the exporter's
                                                     if run.power_replayed or run.exporter_replay else ""), fig),
                     loc="left", fontsize=9)
    axes[-1].set_xlabel("time since the run's first epoch started (s)")
    fig.suptitle(_wrapped("Board power over each run (grey bands: epochs 0, 2, …; dashed: epoch average)", fig))
    return fig


def pareto_front(report: dict) -> Figure:
    """One panel per device × workload: every configuration's time vs energy per epoch with its spread, the
    front joined by a line, dominated ones hollow, the recommended one starred, those of replayed power grey
    crosses off the front; points labelled by what differs."""
    fronts = report["pareto"]
    fig, axes = _figure(3.6 * max(1, len(fronts)), max(1, len(fronts)))
    for ax, front in zip(axes, fronts):
        on = [p for p in front["points"] if not p["dominated"]]
        off = [p for p in front["points"] if p["dominated"]]
        ax.plot([p["e2e_seconds"] for p in on], [p["energy_joules"] for p in on], "o-", color=PALETTE[0],
                label="Pareto front")
        ax.plot([p["e2e_seconds"] for p in off], [p["energy_joules"] for p in off], "o", markerfacecolor="white",
                color=PALETTE[5], label="dominated")
        points = front["points"]
        ax.errorbar([p["e2e_seconds"] for p in points], [p["energy_joules"] for p in points],
                    xerr=[p["e2e_spread_seconds"] for p in points], yerr=[p["energy_spread_joules"] for p in points],
                    fmt="none", ecolor="grey", elinewidth=0.8, capsize=2, label="± std over epochs")
        under = [p for p in points if p["under_measured"]]
        if under:
            ax.plot([p["e2e_seconds"] for p in under], [p["energy_joules"] for p in under], "x", markersize=10,
                    color=PALETTE[3], label="under-measured (one epoch: no spread, fits no budget)")
        shared, labels = row_labels([dict(p, device=front["device"], configuration={  # the workload is the title's
            k: v for k, v in p["configuration"].items() if k not in WORKLOAD}) for p in front["points"]])
        for p, label in zip(front["points"], labels):
            ax.annotate(plain(label.replace("\n", " ")), (p["e2e_seconds"], p["energy_joules"]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
        replayed = front.get("replayed", [])
        if replayed:
            ax.plot([p["e2e_seconds"] for p in replayed], [p["energy_joules"] for p in replayed], "X",
                    markersize=9, color=REPLAYED_COLOR, linestyle="none",
                    label="REPLAYED power: not measured, off the front")
            for p in replayed:
                ax.annotate(plain("replayed: " + " ".join(p["runs"])), (p["e2e_seconds"], p["energy_joules"]),
                            fontsize=6, xytext=(4, -8), textcoords="offset points", color=REPLAYED_COLOR)
        predicted = front.get("predicted", [])
        if predicted:
            ax.errorbar([p["e2e_seconds"] for p in predicted], [p["energy_joules"] for p in predicted],
                        xerr=[p["e2e_spread_seconds"] for p in predicted],
                        yerr=[p["energy_spread_joules"] for p in predicted], fmt="D", markerfacecolor="white",
                        color=PALETTE[4], elinewidth=0.8, capsize=2, linestyle="none", label="predicted (what-if)")
            for p in predicted:
                ax.annotate(plain("predicted: {} of {}{}".format(p["what_if"], " ".join(p["runs"]), "" if
                                                                p["model_error_ratio"] is not None else
                                                                " (not calibrated)")),
                            (p["e2e_seconds"], p["energy_joules"]), fontsize=6, xytext=(4, -8),
                            textcoords="offset points", color=PALETTE[4])
        best = front["recommendation"]
        if best is not None:
            ax.plot([best["e2e_seconds"]], [best["energy_joules"]], "*", markersize=14, color=PALETTE[2],
                    label="recommended")
        ax.set_xlabel("time per epoch (s)")
        ax.set_ylabel("energy per epoch (J)")
        ax.set_title(_wrapped("{} × {}{}{}".format(
            front["device"], front["workload_text"], "; all: " + shared if shared else "",
            "; part of an epoch: never recommended" if front.get("part_of_an_epoch") else ""), fig), fontsize=9)
        ax.legend(frameon=False)
    if not fronts:
        axes[0].text(0.5, 0.5, "no configuration with both time and energy", transform=axes[0].transAxes,
                     ha="center", va="center")
    return fig


def figures(runs: Sequence[Run], report: dict) -> Dict[str, Figure]:
    """Every plot by file name (without .png); build and draw them inside plt.rc_context(STYLE). Past
    MAX_DRAWN runs or rows a figure draws the first ones and says so: one panel or bar per run of 3,000 runs
    took minutes and 2.75 GB for images no one could read."""
    rows = report["comparison"]
    plots = {"time_split": time_split(dict(report, comparison=rows[:MAX_DRAWN])),
             "energy_per_epoch": energy_per_epoch(runs[:MAX_DRAWN], report),
             "power_over_run": power_over_run(runs[:MAX_DRAWN])}
    for name, count in (("time_split", len(rows)), ("energy_per_epoch", len(runs)), ("power_over_run", len(runs))):
        if count > MAX_DRAWN:
            plots[name].text(0.0, 0.0, "showing the first {} of {} {}; the report's table lists every one".format(
                MAX_DRAWN, count, "rows" if name == "time_split" else "runs"), fontsize=8, va="bottom")
    if "pareto" in report:
        plots["pareto"] = pareto_front(report)
    return plots


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes at the paper's resolution, then closed (pyplot keeps every open figure)."""
    out = io.BytesIO()
    try:
        fig.savefig(out, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return out.getvalue()


def png_images(runs: Sequence[Run], report: dict) -> Dict[str, bytes]:
    """Every plot as PNG bytes by file name (without .png): drawn once, for the files and the page alike."""
    with plt.rc_context(STYLE):
        return {name: png(fig) for name, fig in figures(runs, report).items()}


def write_plots(images: Dict[str, bytes], directory: str) -> List[str]:
    """The images as ``<name>.png`` files in ``directory``, each replaced whole or not at all; their paths.
    Raises OSError naming the file (or the directory) that could not be written."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for name, png in images.items():
        paths.append(os.path.join(directory, name + ".png"))
        atomicfile.write_bytes(paths[-1], png)
    return paths


def data_uris(images: Dict[str, bytes]) -> List[Tuple[str, str]]:
    """(name, data: URI) of every image, for a page that embeds them instead of fetching files."""
    return [(name, "data:image/png;base64," + base64.b64encode(png).decode("ascii")) for name, png in images.items()]
