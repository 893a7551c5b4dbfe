"""Paper-ready PNG figures: the time split per device and configuration
(stacked bars), energy per epoch, and board power over each run."""
import os
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from report.collect import Run  # noqa: E402
from report.prom import ReportError  # noqa: E402

# Okabe–Ito: distinguishable with colour-vision deficiency and in greyscale print.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "figure.dpi": 100,
         "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
         "axes.axisbelow": True}
DPI = 200


def _row_label(row: dict) -> str:
    config = row["configuration"]
    short = []
    for key, name in (("batch_size", "b"), ("workers", "w"), ("prefetch_factor", "pf"), ("power_mode", "")):
        if key in config:
            short.append("{}{}".format(name, config[key]))
    lines = [row["device"], row["model"] or "?", " ".join(short), row["storage"] or config.get("dataset_location")]
    return "\n".join(x for x in lines if x)


def time_split(report: dict, path: str) -> None:
    rows = report["comparison"]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 1.5), 3.6))
    xs = list(range(len(rows)))
    stall = [r["fetch_stall_seconds"]["mean"] for r in rows]
    compute = [r["compute_seconds"]["mean"] for r in rows]
    e2e = [r["e2e_seconds"]["mean"] for r in rows]
    e2e_std = [r["e2e_seconds"]["std"] or 0.0 for r in rows]
    known = [s is not None and c is not None and e is not None for s, c, e in zip(stall, compute, e2e)]
    c_ = [c if k else 0.0 for c, k in zip(compute, known)]
    s_ = [s if k else 0.0 for s, k in zip(stall, known)]
    other = [max(e - s - c, 0.0) if k else 0.0 for e, s, c, k in zip(e2e, s_, c_, known)]
    ax.bar(xs, c_, width=0.6, color=PALETTE[0], label="compute")
    ax.bar(xs, s_, width=0.6, bottom=c_, color=PALETTE[1], label="fetch stall")
    ax.bar(xs, other, width=0.6, bottom=[a + b for a, b in zip(c_, s_)], color="#BBBBBB",
           label="other (E2E − stall − compute)")
    ax.errorbar([x for x, k in zip(xs, known) if k], [e for e, k in zip(e2e, known) if k],
                yerr=[d for d, k in zip(e2e_std, known) if k], fmt="none", ecolor="black", capsize=3,
                linewidth=0.8, label="E2E ± std")
    for x, k in zip(xs, known):
        if not k:
            ax.text(x, 0, "missing", ha="center", va="bottom", rotation=90, fontsize=8)
    ax.set_xticks(xs)
    ax.set_xticklabels([_row_label(r) for r in rows])
    ax.set_ylabel("time per epoch (s)")
    ax.set_title("Where an epoch's time goes (mean over epochs ≥ {})".format(report["settings"]["warmup_epochs"]))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    _save(fig, path)


def energy_per_epoch(runs: Sequence[Run], report: dict, path: str) -> None:
    warmup = report["settings"]["warmup_epochs"]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    epochs = sorted({e.epoch for r in runs for e in r.epochs})
    width = 0.8 / max(1, len(runs))
    handles = []
    for i, run in enumerate(runs):
        color = PALETTE[i % len(PALETTE)]
        for e in run.epochs:
            x = epochs.index(e.epoch) - 0.4 + width * (i + 0.5)
            if e.energy_joules is None:
                ax.text(x, 0, "n/a", ha="center", va="bottom", rotation=90, fontsize=7)
                continue
            warm = e.epoch < warmup
            ax.bar(x, e.energy_joules, width=width * 0.95, color="white" if warm else color, edgecolor=color,
                   hatch="////" if warm else None, linewidth=0.8)
        known = any(e.energy_joules is not None for e in run.epochs)
        handles.append(Patch(facecolor=color, edgecolor=color, label="{} ({}){}".format(
            run.run_id, run.device, "" if known else ": no energy data")))
    if warmup > 0:
        handles.append(Patch(facecolor="white", edgecolor="grey", hatch="////", label="warm-up, not averaged"))
    ax.set_xticks(list(range(len(epochs))))
    ax.set_xticklabels([str(e) for e in epochs])
    ax.set_xlabel("epoch")
    ax.set_ylabel("board energy per epoch (J)")
    ax.set_title("Energy per epoch")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    _save(fig, path)


def power_over_run(runs: Sequence[Run], path: str) -> None:
    """One panel per run: board power, the epochs as alternating bands and
    each epoch's average power (energy / duration) as a dashed step."""
    shown = [r for r in runs if any(e.start is not None for e in r.epochs)]
    fig, axes = plt.subplots(len(shown) or 1, 1, figsize=(6.4, 0.4 + 1.5 * max(1, len(shown))), squeeze=False)
    for ax, (i, run) in zip(axes[:, 0], enumerate(shown)):
        color = PALETTE[i % len(PALETTE)]
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
        ax.set_title("{} ({}, {})".format(run.run_id, run.device, run.model or "?"), loc="left", fontsize=9)
    axes[-1, 0].set_xlabel("time since the run's first epoch started (s)")
    fig.suptitle("Board power over each run (grey bands: epochs 0, 2, …; dashed: epoch average)", fontsize=10)
    _save(fig, path)


def pareto_front(report: dict, path: str) -> None:
    """One panel per device × model: every configuration's time vs energy per
    epoch, the front joined by a line, dominated ones hollow, the recommended one starred."""
    fronts = report["pareto"]
    fig, axes = plt.subplots(1, max(1, len(fronts)), figsize=(4.2 * max(1, len(fronts)), 3.6), squeeze=False)
    for ax, front in zip(axes[0], fronts):
        on = [p for p in front["points"] if not p["dominated"]]
        off = [p for p in front["points"] if p["dominated"]]
        ax.plot([p["e2e_seconds"] for p in on], [p["energy_joules"] for p in on], "o-", color=PALETTE[0],
                label="Pareto front")
        ax.plot([p["e2e_seconds"] for p in off], [p["energy_joules"] for p in off], "o", markerfacecolor="white",
                color=PALETTE[5], label="dominated")
        for p in front["points"]:
            ax.annotate(_row_label(dict(p, device="", model=None)).replace("\n", " "),
                        (p["e2e_seconds"], p["energy_joules"]), fontsize=7, xytext=(4, 4), textcoords="offset points")
        best = front["recommendation"]
        if best is not None:
            ax.plot([best["e2e_seconds"]], [best["energy_joules"]], "*", markersize=14, color=PALETTE[2],
                    label="recommended")
        ax.set_xlabel("time per epoch (s)")
        ax.set_ylabel("energy per epoch (J)")
        ax.set_title("{} × {}".format(front["device"], front["model"] or "?"))
        ax.legend(frameon=False)
    if not fronts:
        axes[0, 0].text(0.5, 0.5, "no configuration with both time and energy", transform=axes[0, 0].transAxes,
                        ha="center", va="center")
    _save(fig, path)


def _save(fig, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def write_plots(runs: Sequence[Run], report: dict, directory: str) -> List[str]:
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise ReportError("cannot create the plot directory {} ({}); choose another --plots".format(
            directory, exc.strerror))
    paths = {name: os.path.join(directory, name + ".png")
             for name in ("time_split", "energy_per_epoch", "power_over_run")}  # type: Dict[str, str]
    with plt.rc_context(STYLE):
        time_split(report, paths["time_split"])
        energy_per_epoch(runs, report, paths["energy_per_epoch"])
        power_over_run(runs, paths["power_over_run"])
        if "pareto" in report:
            paths["pareto"] = os.path.join(directory, "pareto.png")
            pareto_front(report, paths["pareto"])
    return list(paths.values())
