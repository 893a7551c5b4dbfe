"""Like for like (report/configuration.py's workload, report/pareto.py's fronts, report/whatif.py's measured
match): a front, a budget and a what-if's check compare runs of one workload (model, dataset, image size, the
samples of a full epoch and those each epoch covered); a run over part of an epoch is never compared per epoch
with a full one, nor recommended."""
from report.configuration import configuration_text
from report.pareto import add_predicted_points, fronts
from report.summary import comparison, run_summary
from report.whatif import add_what_ifs
from tests.report.synthetic import run

FULL = {"dataset_samples": "50000"}


def timed(k: int, run_id: str, seconds: float, samples: float, **info: str):
    """synthetic.run's k-th run, every epoch ``seconds`` long over ``samples`` samples at 6 W."""
    made = run(k, info=dict(FULL, **info), run_id=run_id)
    for epoch in made.epochs:
        epoch.e2e_seconds, epoch.samples = seconds + 0.01 * epoch.epoch, samples
        epoch.fetch_stall_seconds, epoch.compute_seconds = 0.2 * seconds, 0.7 * seconds
        epoch.average_power_watts, epoch.energy_joules = 6.0, 6.0 * epoch.e2e_seconds
    return made


def test_a_max_batches_run_is_never_compared_per_epoch_with_a_full_one():
    """The issue's case: 4 batches of 16 (0.45 s) beside a full epoch (25 s) of the same knobs. The truncated
    run was recommended as the fastest; now it is on a front of its own, with a line saying why, and never
    recommended."""
    full = timed(0, "full", 25.0, 50000.0)
    cut = timed(0, "cut", 0.45, 64.0, max_batches="4")
    rows = comparison([full, cut], warmup_epochs=1)
    assert sorted(r["configuration"]["epoch_samples"] for r in rows) == ["50000", "64"]
    front_list, notes = fronts(rows, time_budget=30.0)
    by_text = {f["workload_text"]: f for f in front_list}
    assert sorted(by_text) == ["vgg11 on cifar10, 50000 samples an epoch", "vgg11 on cifar10, 64 of 50000 samples "
                                                                           "an epoch"]
    whole = by_text["vgg11 on cifar10, 50000 samples an epoch"]
    part = by_text["vgg11 on cifar10, 64 of 50000 samples an epoch"]
    assert [p["runs"] for p in whole["points"]] == [["full"]] and whole["recommendation"]["runs"] == ["full"]
    assert [p["runs"] for p in part["points"]] == [["cut"]] and part["recommendation"] is None
    assert part["binding"] == "no recommendation: its epochs covered 64 of the 50000 samples of a full epoch"
    assert notes == ["Pareto: nano-1 vgg11 on cifar10, 64 of 50000 samples an epoch: a front of its own, never "
                     "compared with full epochs nor recommended: its epochs covered 64 of the 50000 samples of a "
                     "full epoch (its times hold the loader's start-up and first batches in another proportion "
                     "than a full epoch's)"]


def test_runs_cut_alike_compare_with_each_other():
    """Two --max-batches runs over the same samples are one workload: one front, dominance as usual."""
    slow = timed(0, "w1", 2.0, 640.0, max_batches="40", workers="1")
    fast = timed(0, "w2", 1.0, 640.0, max_batches="40", workers="2")
    (front,), _ = fronts(comparison([slow, fast], warmup_epochs=1))
    assert [(p["runs"], p["dominated"]) for p in front["points"]] == [(["w2"], False), (["w1"], True)]


def test_a_trainer_that_did_not_say_its_dataset_size_is_cut_by_max_batches_alone():
    cut = timed(0, "cut", 0.45, 64.0, max_batches="4")
    cut.info.pop("dataset_samples")
    (front,), notes = fronts(comparison([cut], warmup_epochs=1), power_budget=100.0)
    assert front["recommendation"] is None and front["part_of_an_epoch"] == \
        "its epochs were cut at 4 batches (--max-batches)"


def test_cifar10_and_imagefolder_runs_and_two_image_folders_are_on_different_fronts():
    cifar = timed(0, "cifar", 25.0, 50000.0)
    folder = timed(0, "folder", 40.0, 1000.0, dataset="imagefolder", image_size="224", dataset_samples="1000")
    other = timed(0, "other", 30.0, 800.0, dataset="imagefolder", image_size="224", dataset_samples="800")
    rows = comparison([cifar, folder, other], warmup_epochs=1)
    assert len(rows) == 3  # two image folders of the same crop are two configurations, never pooled
    front_list, _ = fronts(rows, time_budget=100.0)
    assert sorted((f["workload_text"], f["recommendation"]["runs"][0]) for f in front_list) == [
        ("vgg11 on cifar10, 50000 samples an epoch", "cifar"),
        ("vgg11 on imagefolder at 224 px, 1000 samples an epoch", "folder"),
        ("vgg11 on imagefolder at 224 px, 800 samples an epoch", "other")]


def test_a_run_whose_epochs_covered_different_samples_is_no_workload():
    mixed = timed(0, "mixed", 25.0, 50000.0)
    mixed.epochs[-1].samples = 20000.0  # a framework stopped it part way through its last epoch
    front_list, notes = fronts(comparison([mixed], warmup_epochs=1))
    assert front_list == [] and notes == [
        "Pareto: nano-1 vgg11 {} left out: its epochs covered different numbers of samples, no one "
        "workload".format(configuration_text(comparison([mixed], warmup_epochs=1)[0]["configuration"]))]


def test_the_what_if_is_checked_only_against_a_run_of_the_same_workload():
    """A doubled-workers prediction on the full dataset is not checked against 2 workers on a 1000-image
    folder, nor against 2 workers over part of an epoch (a framework's window: the same labels, fewer
    samples)."""
    one = timed(0, "w1", 30.0, 50000.0, workers="1")
    elsewhere = timed(0, "w2-folder", 20.0, 1000.0, workers="2", dataset_samples="1000")
    window = timed(0, "w2-window", 1.0, 640.0, workers="2")
    same = timed(0, "w2", 20.0, 50000.0, workers="2")

    def match(*others) -> object:
        records = [run_summary(r, 1) for r in (one,) + others]
        records[0]["predicted"] = [{"workers_doubled": 20.0}, {"workers_doubled": 20.4}]
        add_what_ifs(records, None)
        return records[0]["what_if"]["workers_doubled"].get("measured", {}).get("runs")

    assert match(elsewhere, window) is None
    assert match(elsewhere, window, same) == ["w2"]


def test_predicted_points_sit_on_their_own_workloads_front():
    cifar, folder = timed(0, "cifar", 25.0, 50000.0), timed(0, "folder", 40.0, 1000.0, dataset_samples="1000")
    rows = comparison([cifar, folder], warmup_epochs=1)
    for row in rows:
        row["what_if"] = {"dataset_cached": {"e2e_seconds": 10.0, "e2e_spread_seconds": 0.1, "energy_joules": 60.0,
                                             "energy_spread_joules": 1.0, "basis": "replayed",
                                             "model_error_ratio": 0.05}}
    front_list, _ = fronts(rows)
    add_predicted_points(front_list, rows)
    assert sorted((f["points"][0]["runs"], [p["runs"] for p in f["predicted"]]) for f in front_list) == [
        (["cifar"], [["cifar"]]), (["folder"], [["folder"]])]


def test_a_replayed_run_is_a_row_apart_from_measured_repeats_of_its_knobs():
    """A demo run (power replayed) of the same knobs as two measured runs does not pool with them: the measured
    row stays on the front and keeps its own spread."""
    measured = [timed(0, "a", 25.0, 50000.0), timed(0, "b", 25.2, 50000.0)]
    demo = timed(0, "demo", 20.0, 50000.0)
    demo.power_replayed = True
    rows = comparison(measured + [demo], warmup_epochs=1)
    assert sorted((r["runs"], r["power_replayed"], r["measured_as"]) for r in rows) == [
        (["a", "b"], False, {}), (["demo"], True, {"power_replayed": "true"})]
    (front,), notes = fronts(rows, power_budget=100.0)
    assert front["recommendation"]["runs"] == ["a", "b"] and [p["runs"] for p in front["replayed"]] == [["demo"]]


def test_two_image_folders_of_as_many_images_are_two_workloads():
    """The trainer names the files an epoch reads (run_info dataset_id): two 1000-image folders at 224 px pooled
    into one row and one front by their equal counts; now they are two, each named by its id."""
    a = timed(0, "folder-a", 40.0, 1000.0, dataset="imagefolder", image_size="224", dataset_samples="1000",
              dataset_id="3f2a9c1b7e4d")
    b = timed(0, "folder-b", 30.0, 1000.0, dataset="imagefolder", image_size="224", dataset_samples="1000",
              dataset_id="0c5d8e2f9a11")
    rows = comparison([a, b], warmup_epochs=1)
    assert sorted(r["runs"][0] for r in rows) == ["folder-a", "folder-b"]
    front_list, _ = fronts(rows, time_budget=100.0)
    assert sorted((f["workload_text"], f["recommendation"]["runs"]) for f in front_list) == [
        ("vgg11 on imagefolder (id 0c5d8e2f9a11) at 224 px, 1000 samples an epoch", ["folder-b"]),
        ("vgg11 on imagefolder (id 3f2a9c1b7e4d) at 224 px, 1000 samples an epoch", ["folder-a"])]


def test_runs_of_an_older_trainer_stay_apart_from_newer_runs_of_their_knobs_with_one_line():
    """Runs whose trainer recorded neither dataset_samples nor dataset_id cannot be shown to do the work of a
    newer run of the same knobs (the same count of another folder would look alike): a row and a front apart,
    one line naming both; alone, they still report without a word."""
    from report.configuration import recorded_since
    old = [timed(0, "old-1", 25.0, 50000.0), timed(0, "old-2", 25.1, 50000.0)]
    for made in old:
        made.info.pop("dataset_samples")
    new = timed(0, "new", 25.0, 50000.0, dataset_id="3f2a9c1b7e4d")
    other = timed(0, "new-w2", 20.0, 50000.0, dataset_id="3f2a9c1b7e4d", workers="2")  # other knobs: no match
    rows = comparison(old + [new, other], warmup_epochs=1)
    assert sorted(r["runs"] for r in rows) == [["new"], ["new-w2"], ["old-1", "old-2"]]
    (old_row,) = [r for r in rows if r["runs"] == ["old-1", "old-2"]]
    assert recorded_since(rows) == [
        "Comparison: runs old-1, old-2 (nano-1 vgg11 {}) are a row and a workload apart from runs new of the same "
        "knobs: their trainer, older than run_info's dataset_samples, dataset_id, did not record them, so the same "
        "work cannot be shown; rerun them with this one to compare".format(configuration_text(
            old_row["configuration"]))]
    assert len(fronts(rows)[0]) == 2
    alone = comparison(old, warmup_epochs=1)
    assert recorded_since(alone) == [] and fronts(alone)[0][0]["points"][0]["runs"] == ["old-1", "old-2"]
