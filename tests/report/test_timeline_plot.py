"""edgescope-report --timeline: an epoch's loader timeline, built through Timeline.add from the meter's own
records with known times, drawn as a PNG with a lane per worker under the main process's lane (one collection
per lane and kind, however many batches), written with a Chrome trace holding a thread per worker and the main
process; a missing or bad file is one line and exit 2. The html page embeds each run's last epoch."""
import base64
import io
import json
import os
import subprocess
import sys
import time

import matplotlib.colors
import matplotlib.image
import matplotlib.pyplot as plt
import numpy
import pytest
from hypothesis import given, settings, strategies as st

from report import timeline_plot
from report.cli import main
from report.plots import DPI, STYLE
from tests.processes import child_env
from tests.report.browser import Dom, RefusingProxy, chromium
from trainer.meter import BatchTiming, HostStep, LoadTimes
from trainer.timeline import Timeline, origin

T0 = 5000.0  # CLOCK_MONOTONIC at the loader's start-up
STARTUP = 0.05
MAKE = 0.08  # each batch: read (even batches only) then preprocess
READ = 0.03
STEP = 0.05
VERMILLION = (0xD5, 0x5E, 0x00)  # timeline_plot.COLOURS["wait charged to preprocessing"]


def made(workers: int, batches: int) -> Timeline:
    """Round-robin makers; worker w starts its k-th batch at STARTUP + k * 2 * MAKE; the main process waits
    for batch i until it is ready and then steps for STEP. Even batches read for READ, the odd ones read
    nothing: the wait for an even batch is charged half to storage, an odd one's all to preprocessing."""
    timeline = Timeline()
    timeline.loader_event("startup", T0, T0 + STARTUP, workers, 2)
    clock = T0 + STARTUP
    for i in range(batches):
        worker = i % workers if workers else -1
        began = T0 + STARTUP + (i // max(workers, 1)) * 2 * MAKE if workers else clock
        read = READ if i % 2 == 0 else 0.0
        ready = began + MAKE
        load = LoadTimes(read_s=read, preprocess_s=MAKE - read, worker=worker, began=began, ready=ready,
                         cpu_s=0.5 * MAKE, read_bytes=1000 if read else 0)
        wait_ended = max(clock, ready)
        host = HostStep(clock, wait_ended, wait_ended, wait_ended + STEP, load)
        timeline.add(BatchTiming(wait_ended - clock, STEP, wait_ended + STEP - clock, host=host,
                                 storage_share=0.5 if read else 0.0))
        clock = wait_ended + STEP
    timeline.loader_event("shutdown", clock, clock + 0.02, workers, 2)
    return timeline


def write_epoch(folder, timeline: Timeline, run_id: str, epoch: int) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "epoch-{}.json".format(epoch)
    duration = timeline.shutdown[1] - timeline.startup[0]
    path.write_text(json.dumps(dict(timeline.to_dict(), run_id=run_id, epoch=epoch, duration_s=duration,
                                    main_cpu_s=1.0, cpu_count=2)), encoding="utf-8")
    return str(path)


def epoch_of(timeline: Timeline, run_id: str = "run-a") -> timeline_plot.Epoch:
    return timeline_plot.Epoch(run_id, 1, 2.5, timeline)


def cli(*args: str):
    """(exit status, stderr) of edgescope-report."""
    err = io.StringIO()
    sys_stderr, sys.stderr = sys.stderr, err
    try:
        return main(list(args)), err.getvalue()
    finally:
        sys.stderr = sys_stderr


def bars_by_lane(ax):
    """{(lane, colour): [(start, end)]} from the drawn collections' rectangles."""
    drawn = {}
    for collection in ax.collections:
        colour = matplotlib.colors.to_hex(collection.get_facecolor()[0])
        for path in collection.get_paths():
            xs, ys = path.vertices[:, 0], path.vertices[:, 1]
            lane = round((ys.min() + ys.max()) / 2)
            drawn.setdefault((lane, colour), []).append((round(xs.min(), 6), round(xs.max(), 6)))
    return drawn


def test_each_worker_has_a_lane_holding_its_batches_read_then_preprocess():
    timeline = made(2, 6)
    with plt.rc_context(STYLE):
        fig = timeline_plot.figure(epoch_of(timeline))
    try:
        (ax,) = fig.axes
        assert [t.get_text() for t in ax.get_yticklabels()] == ["main process", "worker 0", "worker 1"]
        assert ax.get_ylim() == (2.5, -0.5)  # the main process on top
        assert ax.get_xlim()[0] == 0 and origin(timeline) == T0
        drawn = bars_by_lane(ax)
        colours = {kind: matplotlib.colors.to_hex(c) for kind, c in timeline_plot.COLOURS.items()}
        # worker 0 made batches 0, 2, 4 (all reading), worker 1 batches 1, 3, 5 (no reads)
        starts = [STARTUP + k * 2 * MAKE for k in range(3)]
        assert drawn[(1, colours["read"])] == [(pytest.approx(s), pytest.approx(s + READ)) for s in starts]
        assert drawn[(1, colours["preprocess"])] == [(pytest.approx(s + READ), pytest.approx(s + MAKE))
                                                     for s in starts]
        assert (2, colours["read"]) not in drawn
        assert drawn[(2, colours["preprocess"])] == [(pytest.approx(s), pytest.approx(s + MAKE)) for s in starts]
        # the main process: 6 steps; the first wait (for batch 0, reading) half storage, half preprocessing
        assert len(drawn[(0, colours["compute"])]) == 6
        first_wait = (STARTUP, STARTUP + MAKE)
        assert drawn[(0, colours["wait charged to storage"])][0] == (
            pytest.approx(first_wait[0]), pytest.approx(first_wait[0] + MAKE / 2))
        assert drawn[(0, colours["wait charged to preprocessing"])][0] == (
            pytest.approx(first_wait[0] + MAKE / 2), pytest.approx(first_wait[1]))
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == ["read", "preprocess", "wait charged to storage", "wait charged to preprocessing",
                          "compute", "loader start-up, shutdown"]
        title = fig.texts[0].get_text().replace("\n", " ")
        assert "run run-a, epoch 1: 2 workers, prefetch factor 2, 6 batches" in title
    finally:
        plt.close(fig)


def test_without_workers_the_main_process_loads_on_a_lane_of_its_own():
    with plt.rc_context(STYLE):
        fig = timeline_plot.figure(epoch_of(made(0, 4)))
    try:
        (ax,) = fig.axes
        assert [t.get_text() for t in ax.get_yticklabels()] == ["main process", "main process: loading"]
        assert len(bars_by_lane(ax)[(1, matplotlib.colors.to_hex(timeline_plot.COLOURS["preprocess"]))]) == 4
    finally:
        plt.close(fig)


def test_thousands_of_batches_are_a_few_collections():
    timeline = made(8, 20000)
    began = time.monotonic()
    png = timeline_plot.image(epoch_of(timeline))
    seconds = time.monotonic() - began
    with plt.rc_context(STYLE):
        fig = timeline_plot.figure(epoch_of(timeline))
    try:
        # one collection per lane and kind: 8 workers' preprocessing, the 4 even workers' reads (the even
        # batches), the main lane's compute and two parts of the wait
        assert len(fig.axes[0].collections) == 8 + 4 + 3
        assert len(fig.axes[0].get_yticklabels()) == 9
    finally:
        plt.close(fig)
    assert png.startswith(b"\x89PNG") and seconds < 30, "{:.1f} s to draw 20000 batches".format(seconds)


def test_a_batch_under_a_pixel_wide_still_shows():
    """100 makings of 30 ms, 1 s apart, the first 0.5 s after the epoch's start (clear of the axis): about a
    third of a pixel each at the saved resolution; snapped to whole pixels, over half of them vanish."""
    timeline = Timeline()
    for k in range(100):
        began = T0 + 0.5 + k
        load = LoadTimes(read_s=0.0, preprocess_s=0.03, worker=0, began=began, ready=began + 0.03, cpu_s=0.01)
        host = HostStep(began - 0.5, began - 0.5, began - 0.5, began - 0.4, load)
        timeline.add(BatchTiming(0.0, 0.1, 0.1, host=host, storage_share=0.0))
    timeline.workers = 1
    with plt.rc_context(STYLE):
        fig = timeline_plot.figure(epoch_of(timeline))
        fig.set_dpi(DPI)
        fig.canvas.draw()
    try:
        (ax,) = fig.axes
        x0, y = ax.transData.transform((0, 1))
        x1, _ = ax.transData.transform((100, 1))  # 100 s: 0.5 s after the last making
        assert (x1 - x0) / 100 * 0.03 < 0.5  # each making is under half a pixel
        pixels = numpy.asarray(fig.canvas.buffer_rgba())[int(fig.bbox.height - y), :, :3].astype(int)
        inked = (pixels[:, 0] - pixels[:, 2] > 20)[int(x0) + 2:]  # orange, even faint; not grey grid lines
        shown = numpy.count_nonzero(inked[1:] & ~inked[:-1]) + int(inked[0])
        assert shown == 100, "{} of 100 makings drawn".format(shown)
    finally:
        plt.close(fig)


def test_a_run_id_with_dollars_is_drawn_as_text():
    run_id = r"sweep $\x$ costs $5$"
    with plt.rc_context(STYLE):
        fig = timeline_plot.figure(epoch_of(made(1, 2), run_id))
    try:
        fig.canvas.draw()  # mathtext would fail on \x
        assert fig.texts[0]._preprocess_math(fig.texts[0].get_text())[1] is False
        assert run_id in fig.texts[0]._preprocess_math(fig.texts[0].get_text())[0].replace("\n", " ")
    finally:
        plt.close(fig)


def strict_json(text: str):
    def refuse(constant: str):
        raise ValueError("{} is not JSON".format(constant))
    return json.loads(text, parse_constant=refuse)


def test_the_cli_writes_the_last_epoch_and_its_trace(tmp_path):
    timeline = made(2, 6)
    folder = tmp_path / "timelines" / "run-a"
    write_epoch(folder, made(2, 2), "run-a", 0)
    timeline.columns["storage_share"][2] = float("nan")  # unknown: null in the trace (batch 1 had no wait)
    timeline.columns["worker"][5] = float("nan")  # unknown: drawn on no worker's lane, traced on the main one
    write_epoch(folder, timeline, "run-a", 3)
    out = tmp_path / "picture.png"
    status, err = cli("--timeline", "run-a", "--timeline-dir", str(tmp_path / "timelines"), "--output", str(out))
    assert status == 0, err
    assert "epoch 3 of run run-a: the last one written" in err
    image = matplotlib.image.imread(str(out))
    assert image.shape[:2] == (round((1.7 + 0.32 * 3) * DPI), round(7.0 * DPI))
    trace = strict_json((tmp_path / "picture.trace.json").read_text(encoding="utf-8"))
    assert trace["displayTimeUnit"] == "ms"
    events = trace["traceEvents"]
    threads = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert threads == {0: "main process", 1: "worker 0", 2: "worker 1"}
    spans = [e for e in events if e["ph"] == "X"]
    assert {e["tid"] for e in spans} == {0, 1, 2}
    assert sorted(e["args"]["batch"] for e in spans if e["name"] == "read") == [0, 2, 4]
    assert {e["tid"] for e in spans if e["name"] == "read"} == {1}
    assert [e["tid"] for e in spans if e["name"] == "preprocess" and e["args"]["batch"] == 5] == [0]
    assert [e["args"]["storage_share"] for e in spans if e["name"] == "wait"][:3] == [0.5, None, 0.5]
    startup = next(e for e in spans if e["name"] == "loader startup")
    assert startup["ts"] == 0 and startup["dur"] == pytest.approx(STARTUP * 1e6)
    assert min(e["ts"] for e in spans) == 0

    status, err = cli("--timeline", str(folder / "epoch-0.json"), "--output", str(tmp_path / "zero.png"))
    assert status == 0 and "last one" not in err, err
    assert (tmp_path / "zero.trace.json").exists()


def test_real_trainer_timeline_is_drawn(tmp_path):
    """What edgescope-train --timeline-dir writes is what --timeline reads: lanes of the run's two workers."""
    pytest.importorskip("torch")
    from trainer.synthetic import write_jpeg_folder
    data, timelines = str(tmp_path / "images"), tmp_path / "timelines"
    write_jpeg_folder(data, 64, 32)
    subprocess.run([sys.executable, "-m", "trainer.cli", "--dataset", "imagefolder", "--data-dir", data,
                    "--image-size", "32", "--model", "mobilenet_v3_small", "--batch-size", "16", "--workers", "2",
                    "--epochs", "2", "--metrics-port", "-1", "--linger", "0", "--run-id", "real",
                    "--timeline-dir", str(timelines)], env=child_env(), check=True, timeout=300,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    status, err = cli("--timeline", "real", "--timeline-dir", str(timelines), "--output", str(tmp_path / "r.png"))
    assert status == 0 and "epoch 1 of run real" in err, err
    epoch = timeline_plot.read(str(timelines / "real" / "epoch-1.json"))
    with plt.rc_context(STYLE):
        fig = timeline_plot.figure(epoch)
    try:
        assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["main process", "worker 0", "worker 1"]
        assert {lane for lane, _ in bars_by_lane(fig.axes[0])} == {0, 1, 2}
    finally:
        plt.close(fig)
    trace = strict_json((tmp_path / "r.trace.json").read_text(encoding="utf-8"))
    assert {e["tid"] for e in trace["traceEvents"] if e["ph"] == "X"} == {0, 1, 2}


def bad_files(tmp_path):
    """(what, arguments, words the error names) for each mistake."""
    root = tmp_path / "timelines"
    good = json.loads(json.dumps(dict(made(1, 2).to_dict(), run_id="r", epoch=0, duration_s=1.0)))
    cases = []
    for name, content in (("not-json", b"{"), ("not-utf8", b"\xff\xfe{}"), ("deep", b"[" * 100000 + b"]" * 100000),
                          ("wrong-version", json.dumps(dict(good, version=9)).encode()),
                          ("infinite", json.dumps(dict(good, startup=[T0, float("inf")])).encode()),
                          ("no-run-id", json.dumps({k: v for k, v in good.items() if k != "run_id"}).encode()),
                          ("20000-workers", json.dumps(dict(good, workers=20000)).encode())):  # 4-6 GB to draw
        (root / name).mkdir(parents=True)
        (root / name / "epoch-0.json").write_bytes(content)
        cases.append((name, ["--timeline", name, "--timeline-dir", str(root)], [name + "/epoch-0.json"]))
    for name, make in (("fifo", os.mkfifo), ("zero", lambda path: os.symlink("/dev/zero", path))):
        (root / name).mkdir(parents=True)
        make(str(root / name / "epoch-0.json"))  # a FIFO blocked the read for ever; /dev/zero filled the memory
        cases.append((name, ["--timeline", name, "--timeline-dir", str(root)], ["not a regular file"]))
    (root / "empty").mkdir()
    cases += [("no directory", ["--timeline", "r", "--timeline-dir", str(tmp_path / "nope")], ["nope"]),
              ("no run", ["--timeline", "r", "--timeline-dir", str(root)], ["run r", "empty"]),
              ("no epochs", ["--timeline", "empty", "--timeline-dir", str(root)], ["empty"]),
              ("no such epoch", ["--timeline", "not-json", "--timeline-dir", str(root), "--epoch", "4"],
               ["epoch 4", "epochs there: 0"]),
              ("no such file", ["--timeline", str(tmp_path / "gone.json")], ["gone.json"])]
    return cases


def test_a_bad_directory_run_epoch_or_file_is_one_line_and_exit_2(tmp_path):
    for what, args, words in bad_files(tmp_path):
        status, err = cli(*args, "--output", str(tmp_path / "out.png"))
        assert status == 2, what
        assert err.count("\n") == 1 and err.startswith("edgescope-report: error: ") and "Traceback" not in err, err
        assert all(w in err for w in words), (what, err)
        assert not (tmp_path / "out.png").exists()


def test_the_html_page_embeds_each_runs_last_epoch(bench_prometheus, tmp_path):
    bench = bench_prometheus.bench
    root = tmp_path / "timelines"
    write_epoch(root / "run-nano-a", made(2, 2), "run-nano-a", 0)
    last = write_epoch(root / "run-nano-a", made(2, 40), "run-nano-a", 2)
    write_epoch(root / "run-orin-a", made(4, 40), "run-orin-a", 1)
    write_epoch(root / "not-in-the-report", made(1, 2), "not-in-the-report", 0)
    page = tmp_path / "report.html"
    status, err = cli("--prometheus", bench_prometheus.url, "--since", repr(bench.base), "--until", repr(bench.end),
                      "--format", "html", "--output", str(page), "--plots", str(tmp_path / "plots"),
                      "--timeline-dir", str(root))
    assert status == 0, err
    proxy = RefusingProxy()
    try:
        dom = Dom(chromium(page, proxy, "--dump-dom"))
        chromium(page, proxy, "--screenshot=" + str(tmp_path / "shot.png"), "--window-size=1400,5000")
    finally:
        proxy.close()
    assert proxy.page_hosts() == []
    images = {i["alt"]: i["src"] for i in dom.tags("img")}
    assert sorted(a for a in images if a.startswith("timeline")) == ["timeline run-nano-a", "timeline run-orin-a"]
    prefix = "data:image/png;base64,"
    shown = base64.b64decode(images["timeline run-nano-a"][len(prefix):])
    assert shown == (tmp_path / "plots" / "timeline_run-nano-a.png").read_bytes()
    assert shown == timeline_plot.image(timeline_plot.read(last))  # epoch 2, the last one written
    # the browser drew them: the waits charged to preprocessing are the page's only vermillion
    shot = (matplotlib.image.imread(str(tmp_path / "shot.png"))[:, :, :3] * 255).round()
    vermillion = numpy.all(numpy.abs(shot - numpy.array(VERMILLION)) <= 2, axis=2).sum()
    assert vermillion > 2000, "no timeline on the screenshot ({} vermillion pixels)".format(vermillion)


def number_paths(value, path=()):
    """The path of every number in a JSON value."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in number_paths(v, path + (k,))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in number_paths(v, path + (i,))]
    return [path] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


GOOD = json.dumps(dict(made(1, 2).to_dict(), run_id="r", epoch=0, duration_s=1.0))


@settings(max_examples=15, deadline=None)
@given(where=st.sampled_from([p for p in number_paths(json.loads(GOOD))  # counts are bounded on their own
                              if p not in (("workers",), ("prefetch_factor",))]),
       token=st.sampled_from(["1e999", "-1e999", "NaN", "Infinity", "9" * 400, "-5", "1e300"]))
def test_any_number_of_a_timeline_made_extreme_is_a_picture_or_one_line(tmp_path_factory, where, token):
    """A timeline with 1e999 (or NaN, a 400-digit integer, -5) in any number but the counts of workers and
    prefetch (bounded by what the machine could run): its shape is checked once where it is read, so the report
    draws it or says in one line what is wrong, never a traceback."""
    tmp = tmp_path_factory.mktemp("t")
    data = json.loads(GOOD)
    holder = data
    for key in where[:-1]:
        holder = holder[key]
    holder[where[-1]] = "@@"
    (tmp / "epoch-0.json").write_text(json.dumps(data).replace('"@@"', token), encoding="utf-8")
    status, err = cli("--timeline", str(tmp / "epoch-0.json"), "--output", str(tmp / "out.png"))
    assert (status == 0 and err.count("edgescope-report: wrote ") == err.count("\n") == 2) or \
        (status == 2 and err.count("\n") == 1 and err.startswith("edgescope-report: error: ")), err
