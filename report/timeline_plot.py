"""One epoch's loader timeline (``edgescope-train --timeline-dir``) as a picture and as a Chrome trace.

The PNG puts every batch's making on its worker's lane (read, then preprocess) over the main process's lane
(its waits, split into the parts charged to storage and to preprocessing, and its steps), so a stall can be
traced to the worker that was late and to what it was doing. Each lane and kind is one ``broken_barh``
collection, so an epoch of thousands of batches draws as fast as one of ten. The trace opens in Perfetto's UI
(ui.perfetto.dev) or chrome://tracing, to zoom into single batches."""
import json
import os
import re
from typing import Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

import matplotlib.pyplot as plt
import numpy
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from exporter import atomicfile
from exporter.ranges import NON_NEGATIVE, outside
from exporter.yamlfile import one_line
from report.plots import PALETTE, STYLE, _figure, _wrapped, png
from report.prom import ReportError
from exporter.readfile import Unreadable
from trainer.timeline import Timeline, origin, read_json, run_folder, trace_events

EPOCH_FILE = re.compile(r"^epoch-(\d+)\.json$")
# The wait's parts take the lighter or stronger shade of what they are charged to; Okabe–Ito throughout.
COLOURS = {"read": PALETTE[0], "preprocess": PALETTE[1], "wait charged to storage": PALETTE[4],
           "wait charged to preprocessing": PALETTE[5], "wait (no split)": "#999999", "compute": PALETTE[2]}
LOADER = "#DDDDDD"  # the loader's start-up and shutdown
BAR_HEIGHT = 0.7
LISTED = 10  # runs named when the asked one is missing


class Epoch(NamedTuple):
    run_id: str
    epoch: int
    duration_s: float
    timeline: Timeline


def epoch_files(directory: str, run_id: str) -> Dict[int, str]:
    """Each epoch the trainer wrote for the run, by number (none: the run has no folder there)."""
    if not os.path.isdir(directory):
        raise ReportError("no timeline directory {}; give the directory edgescope-train --timeline-dir wrote "
                          "with --timeline-dir DIR".format(directory))
    folder = run_folder(directory, run_id)
    found = {}
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        match = EPOCH_FILE.match(name)
        if match:
            found[int(match.group(1))] = os.path.join(folder, name)
    return found


def find(directory: str, run_id: str, epoch: Optional[int]) -> str:
    """The epoch's file: ``epoch``, or the last one written (a kept epoch when the run finished); ReportError
    says what is missing and what to give."""
    found = epoch_files(directory, run_id)
    folder = run_folder(directory, run_id)
    if not os.path.isdir(folder):
        runs = sorted(os.listdir(directory))
        named = ", ".join(runs[:LISTED]) + (", …" if len(runs) > LISTED else "") if runs else "none"
        raise ReportError("no timelines of run {} in {} (runs there: {}); check the run id or --timeline-dir".format(
            run_id, directory, named))
    if not found:
        raise ReportError("{} holds no epoch-N.json; the run wrote no epoch with --timeline-dir".format(folder))
    chosen = max(found) if epoch is None else epoch
    if chosen not in found:
        raise ReportError("no epoch {} of run {} in {} (epochs there: {}); choose one with --epoch".format(
            epoch, run_id, folder, ", ".join(str(n) for n in sorted(found))))
    return found[chosen]


def read(path: str) -> Epoch:
    """The epoch file as the trainer wrote it; ReportError names the file and what to do."""
    try:
        data = read_json(path)
        timeline = Timeline.from_dict(data)
        duration = float(data["duration_s"])
        problem = outside(duration, NON_NEGATIVE)
        if problem:
            raise ValueError("duration_s {:g} is {}".format(duration, problem))
        return Epoch(str(data["run_id"]), int(data["epoch"]), duration, timeline)
    except (OSError, Unreadable) as exc:
        raise ReportError("cannot read the timeline {} ({}); give a readable file".format(
            path, exc.strerror if isinstance(exc, OSError) else exc))
    except (ValueError, KeyError, TypeError, RecursionError, OverflowError) as exc:  # bad JSON, UTF-8: ValueErrors
        raise ReportError("{} is not a timeline edgescope-train wrote ({}); write it again with edgescope-train "
                          "--timeline-dir or choose another --epoch".format(path, one_line(str(exc))))


def lanes(timeline: Timeline) -> List[str]:
    """Top to bottom: the main process's waits and steps, then each worker; without workers the main process
    makes the batches inside its waits, drawn on a lane of their own."""
    return ["main process"] + (["worker {}".format(w) for w in range(timeline.workers)] or ["main process: loading"])


def bars(timeline: Timeline) -> List[Tuple[int, str, numpy.ndarray, numpy.ndarray]]:
    """(lane, kind, starts, ends) in seconds from the epoch's first stamp, in drawing order: on each lane the
    short kinds (waits, reads) last, so a bar under a pixel wide blends over its neighbour in proportion instead
    of being painted over. Unknown (NaN) bars are left to the drawing, which keeps only those with end > start."""
    start = origin(timeline)

    def column(name: str) -> numpy.ndarray:
        return numpy.asarray(timeline.columns[name], dtype=float)

    began, read_s, ready = column("began") - start, column("read_s"), column("ready") - start
    wait_began, wait_ended = column("wait_began") - start, column("wait_ended") - start
    storage_ended = wait_began + (wait_ended - wait_began) * column("storage_share")
    split = ~numpy.isnan(storage_ended)
    made_on = numpy.maximum(column("worker"), 0) + 1  # worker w on lane w + 1; the main process's making on 1
    out = [(0, "compute", column("step_began") - start, column("step_ended") - start),
           (0, "wait charged to storage", wait_began[split], storage_ended[split]),
           (0, "wait charged to preprocessing", storage_ended[split], wait_ended[split]),
           (0, "wait (no split)", wait_began[~split], wait_ended[~split])]
    for lane in range(1, len(lanes(timeline))):
        mine = made_on == lane
        out += [(lane, "preprocess", began[mine] + read_s[mine], ready[mine]),
                (lane, "read", began[mine], began[mine] + read_s[mine])]
    return out


def figure(epoch: Epoch) -> Figure:
    """The epoch's lanes over seconds from its first stamp, the loader's start-up and shutdown shaded."""
    timeline = epoch.timeline
    names = lanes(timeline)
    fig, (ax,) = _figure(1.7 + 0.32 * len(names))
    start, end = origin(timeline), 0.0
    drawn: Set[str] = set()
    for lane, kind, began, ended in bars(timeline):
        keep = ended > began  # False where either is NaN
        if keep.any():
            ax.broken_barh(numpy.column_stack([began[keep], ended[keep] - began[keep]]),
                           (lane - BAR_HEIGHT / 2, BAR_HEIGHT), facecolors=COLOURS[kind], linewidth=0,
                           snap=False)  # snapped to pixels, a bar under a pixel wide would vanish
            end = max(end, float(ended[keep].max()))
            drawn.add(kind)
    loader = [interval for interval in (timeline.startup, timeline.shutdown) if interval is not None]
    for began, ended in loader:
        ax.axvspan(began - start, ended - start, color=LOADER, zorder=0, linewidth=0)
        end = max(end, ended - start)
    handles = [Patch(color=COLOURS[kind], label=kind) for kind in COLOURS if kind in drawn]
    if loader:
        handles.append(Patch(color=LOADER, label="loader start-up, shutdown"))
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    ax.set_ylim(len(names) - 0.5, -0.5)  # the main process on top
    ax.yaxis.grid(False)
    ax.set_xlim(0, end or 1.0)
    ax.set_xlabel("seconds since the epoch's start")
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, frameon=False,
              borderaxespad=0.2)
    loading = "{} workers, prefetch factor {}".format(timeline.workers, timeline.prefetch_factor) \
        if timeline.workers else "no workers (the main process loads)"
    title = "Loader timeline of run {}, epoch {}: {}, {} batches, {:.2f} s".format(
        epoch.run_id, epoch.epoch, loading, len(timeline), epoch.duration_s)
    if timeline.truncated:
        title += " (cut: only the first {} batches were kept)".format(len(timeline))
    fig.suptitle(_wrapped(title, fig))
    return fig


def image(epoch: Epoch) -> bytes:
    """The figure as PNG, in the report's plot style and resolution."""
    with plt.rc_context(STYLE):
        return png(figure(epoch))


def trace(epoch: Epoch) -> Dict[str, object]:
    """The Chrome trace-event JSON object (times in microseconds, shown in milliseconds)."""
    name = "run {} epoch {}".format(epoch.run_id, epoch.epoch)
    return {"traceEvents": trace_events(epoch.timeline, name), "displayTimeUnit": "ms"}


def default_output(path: str) -> str:
    """RUN-epoch-N.png in the working directory, from the epoch file's folder and name."""
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return "{}-{}.png".format(folder, os.path.splitext(os.path.basename(path))[0])


def write(epoch: Epoch, output: str) -> Tuple[str, str]:
    """The PNG at ``output`` and the trace beside it (``output`` less .png, plus .trace.json); their paths."""
    trace_path = os.path.splitext(output)[0] + ".trace.json"
    contents = ((output, image(epoch)), (trace_path, json.dumps(trace(epoch), allow_nan=False).encode("utf-8")))
    try:  # both or neither: a failure leaves the earlier picture and trace whole, never a new one beside an old
        atomicfile.write_together([(path, lambda f, data=data: f.write(data)) for path, data in contents])
    except OSError as exc:
        raise ReportError(atomicfile.cannot_write("timeline", exc.filename or output, exc, "choose another --output"))
    return output, trace_path


def last_epoch_images(directory: str, run_ids: Sequence[str]) -> Dict[str, bytes]:
    """``timeline_<run>``: the PNG of the last epoch written of each run that has timelines in ``directory``,
    for the html page and --plots."""
    images = {}
    for run_id in run_ids:
        found = epoch_files(directory, run_id)
        if found:
            images["timeline_" + os.path.basename(run_folder(directory, run_id))] = image(read(found[max(found)]))
    return images
