"""bench/whatif_accuracy.py's arithmetic on hand-made records (no trainer runs): which configuration predicts
which, the error and its bar, the table and the verdicts."""
import json
import math
import statistics
import subprocess
import sys

import pytest

from bench.whatif_accuracy import (CACHED, MIB, Config, Row, analytic_epoch, calibration_table, cases_that_matter,
                                   child_setup, compare, judged, kept, label, main, pairings, parse_args, plan, rows,
                                   storage_key, summary, table)
from trainer import calibration
from trainer.machine import Machine
from trainer.timeline import Timeline, what_ifs

SLOW, FAST = 4 * MIB, 8 * MIB
SPREADS_ONLY = calibration.Calibration({}, {}, "no table", None)  # bars of the epochs' spreads × Student t alone
T2, T3 = calibration.student_t(2), calibration.student_t(3)  # 1.84, 1.32


def epochs(durations, **predicted):
    """Records as the trainer's --results writes them: epoch 0 first, one predicted value per epoch."""
    out = []
    for i, duration in enumerate(durations):
        values = {name: (v[i] if isinstance(v, list) else v) for name, v in predicted.items()}
        out.append({"epoch": i, "complete": True, "duration_s": duration, "predicted_duration_s": values,
                    "prediction_basis": {name: "because" if v is None else "replayed" for name, v in values.items()}})
    return out


def test_the_plan_and_its_pairings_follow_the_grid():
    configs = plan({64: 40, 224: 20}, [1, 2, 4], [SLOW, FAST], storage_workers=1, cold=True)
    assert len(configs) == 14 and configs[0] == Config(64, 1, CACHED, 64, 0, 40)
    assert configs[6] == Config(64, 1, FAST, 64, 0, 40) and configs[7] == Config(224, 1, CACHED, 224, 0, 20)
    assert plan({64: 6}, [1, 2], [SLOW], 1, cold=False, file_size=384) == [Config(64, 1, CACHED, 384, 0, 6),
                                                                          Config(64, 2, CACHED, 384, 0, 6)]
    pairs = pairings(configs)
    assert all(t.size == s.size for t, s, _ in pairs)  # never across image sizes
    for_64 = {(t, s, name) for t, s, name in pairs if t.size == 64}

    def grid(workers, storage):
        return Config(64, workers, storage, 64, 0, 40)
    assert for_64 == {
        (grid(1, CACHED), grid(1, SLOW), "dataset_cached"),
        (grid(1, CACHED), grid(1, FAST), "dataset_cached"),
        (grid(2, CACHED), grid(2, SLOW), "dataset_cached"),
        (grid(4, CACHED), grid(4, SLOW), "dataset_cached"),
        (grid(2, CACHED), grid(1, CACHED), "workers_doubled_storage_scales"),
        (grid(4, CACHED), grid(2, CACHED), "workers_doubled_storage_scales"),
        (grid(2, SLOW), grid(1, SLOW), "workers_doubled"),
        (grid(4, SLOW), grid(2, SLOW), "workers_doubled"),
        (grid(1, SLOW), grid(1, FAST), storage_key(SLOW)),
        (grid(1, FAST), grid(1, SLOW), storage_key(FAST)),
    }
    assert len(pairs) == 20


def test_the_cases_that_matter_pair_only_within_their_workload_and_cpus():
    """Storage-bound, one core shared and preprocessing-bound: each predicted only from its own kind (same
    files, batches and CPUs), never from the unpinned runs of the same files."""
    configs = cases_that_matter([SLOW, FAST], cold=True, quick=False)
    assert len(set(configs)) == len(configs) == 8
    named = {(label(t), label(s), name) for t, s, name in pairings(configs)}
    assert named == {
        ("64 px of 768 px files, 1 worker, cached", "64 px of 768 px files, 1 worker, cold 4 MiB/s", "dataset_cached"),
        ("64 px of 768 px files, 1 worker, cached", "64 px of 768 px files, 1 worker, cold 8 MiB/s", "dataset_cached"),
        ("64 px of 768 px files, 1 worker, cold 4 MiB/s", "64 px of 768 px files, 1 worker, cold 8 MiB/s",
         storage_key(SLOW)),
        ("64 px of 768 px files, 1 worker, cold 8 MiB/s", "64 px of 768 px files, 1 worker, cold 4 MiB/s",
         storage_key(FAST)),
        ("64 px of 768 px files, 1 worker, cached, 1 CPU", "64 px of 768 px files, 1 worker, cold 4 MiB/s, 1 CPU",
         "dataset_cached"),
        ("64 px of 768 px files, 2 workers, cached, 1 CPU", "64 px of 768 px files, 1 worker, cached, 1 CPU",
         "workers_doubled_storage_scales"),
        ("64 px of 1024 px files, 2 workers, cached, 2 CPUs", "64 px of 1024 px files, 1 worker, cached, 2 CPUs",
         "workers_doubled_storage_scales"),
    }
    assert [c.storage for c in cases_that_matter([SLOW, FAST], cold=False, quick=True)] == [CACHED] * 5


def test_the_trainer_is_pinned_to_the_configurations_cpus(tmp_path):
    """A child started as train() starts the trainer runs on CPU 0 alone, after entering the throttle's group
    (here: a marker file); unpinned, only the group's entry is left."""
    marker = tmp_path / "entered"
    affinity = [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"]
    pinned = subprocess.run(affinity, stdout=subprocess.PIPE, check=True,
                            preexec_fn=child_setup(1, lambda: marker.write_text("yes")))
    assert pinned.stdout.decode().strip() == "[0]" and marker.read_text() == "yes"
    assert child_setup(0, None) is None


def test_the_storage_what_if_is_named_as_the_trainer_names_it():
    # the trainer parses --what-if-storage-bps as a float and names the what-if with {:g}: 8.38861e+06
    names = what_ifs(Timeline(), 1.0, Machine(2, 0.0), [float(FAST)], [2.0], None, None)
    assert storage_key(FAST) in names and storage_key(FAST) == "storage_bps=8.38861e+06"


def test_kept_epochs_drop_the_warm_up_and_interrupted_ones():
    records = epochs([5.0, 1.0, 2.0, 3.0])
    records[3]["complete"] = False
    assert [r["epoch"] for r in kept(records)] == [1, 2]


def test_error_its_bar_and_the_noise_verdict():
    """As the report judges it: the prediction's bar is its spread × Student t with the model's error for its
    kind, the measurement's its spread × Student t."""
    table = calibration.Calibration({"dataset_cached": 0.05}, {"dataset_cached": 3}, "a table", None)
    c = compare([9.0, 11.0], [11.0, 13.0], what_if="dataset_cached", table=table)  # 10 ± 1.41 against 12 ± 1.41
    predicted_bar, measured_bar = math.hypot(T2 * math.sqrt(2), 0.05 * 10), T2 * math.sqrt(2)
    assert c.predicted == pytest.approx((10.0, predicted_bar)) and c.measured == pytest.approx((12.0, math.sqrt(2)))
    assert c.error == pytest.approx(-1 / 6)
    assert c.error_sd == pytest.approx(10 / 12 * math.hypot(predicted_bar / 10, measured_bar / 12))
    assert c.within_noise and c.inside_bar
    exact = compare([10.0, 10.0], [12.0, 12.2], table=SPREADS_ONLY)  # no spread, no model error: the measured's
    assert exact.error_sd == pytest.approx(10 / 12.1 * T2 * statistics.stdev([12.0, 12.2]) / 12.1)
    assert not exact.within_noise and not exact.inside_bar
    close = compare([11.5, 12.5], [11.0, 13.0])
    assert close.error == pytest.approx(0.0) and close.inside_bar and close.within_noise


def test_rows_table_and_summary_from_hand_made_runs():
    cold, cached, cached2 = Config(64, 1, SLOW), Config(64, 1, CACHED), Config(64, 2, CACHED)
    runs = {
        cold: epochs([9.0, 6.0, 6.2, 5.8], dataset_cached=[9.0, 4.4, 4.6, 4.5], workers_doubled=None),
        cached: epochs([5.0, 4.0, 4.2, 4.1], workers_doubled_storage_scales=[3.0, 2.0, 2.0, 2.0]),
        cached2: epochs([4.0, 3.0, 3.1, 3.2]),
    }
    result = {(r.target, r.source, r.what_if): r for r in rows(runs, table=SPREADS_ONLY)}
    assert set(result) == {(cached, cold, "dataset_cached"), (cached2, cached, "workers_doubled_storage_scales")}
    caching = result[(cached, cold, "dataset_cached")].comparison
    assert caching.measured[0] == pytest.approx(4.1) and caching.predicted[0] == pytest.approx(4.5)
    assert caching.error == pytest.approx(4.5 / 4.1 - 1)  # the warm-up epoch's 9 s and 5 s left out
    doubling = result[(cached2, cached, "workers_doubled_storage_scales")].comparison
    assert doubling.error == pytest.approx(2.0 / 3.1 - 1) and not doubling.inside_bar
    text = table(rows(runs, table=SPREADS_ONLY))
    assert text.splitlines()[0].startswith("| configuration measured | predicted from |")
    # the change measured (6.0 s cold to 4.1 s cached), the replay's error, "no change"'s (6.0 s for 4.1 s); no
    # DS-Analyzer error without compute and preprocessing in the records
    # (the prediction's bar: 0.10 s × Student t for 3 epochs)
    assert "| 64 px, 1 worker, cached | 64 px, 1 worker, cold 4 MiB/s: `dataset_cached` | 4.50 ± 0.13 s | " \
           "4.10 ± 0.10 s | -32 % | +10 ± 5 % | +46 % |  | no |" in text
    # identical epochs: the mean to four significant digits, ± 0
    assert "| 2.000 ± 0 s | 3.10 ± 0.10 s | -24 % | -35 ± 3 % | +32 % |  | no |" in text
    lines = summary(rows(runs, table=SPREADS_ONLY))
    assert lines[0].startswith("every comparison: median |error| 22.6 % (target <= 10 %): FAIL")
    assert "worst |error| 35.5 % (64 px, 2 workers, cached from 64 px, 1 worker, cached" in lines[1]
    assert lines[1].endswith("FAIL")
    assert lines[2].startswith("inside their bar 0 of 2 (0 %, target about two in three), twice their bar 0 of 2 (0 %")
    assert lines[2].endswith("FAIL")  # +10 ± 5 %, -35 ± 3 %


def test_the_bars_calibration_counts_errors_inside_twice_their_bar():
    a, b = Config(64, 1, SLOW), Config(64, 2, SLOW)
    between = Row(b, a, "workers_doubled", compare([9.5, 10.5], [12.5, 13.5], table=SPREADS_ONLY), "")  # 1.8 bars
    inside = Row(b, a, "workers_doubled", compare([11.5, 12.5], [11.0, 13.0]), "")
    assert summary([between, inside])[2] == ("inside their bar 1 of 2 (50 %, target about two in three), twice their "
                                             "bar 2 of 2 (100 %, target 19 in 20): PASS")


def test_a_prediction_the_trainer_did_not_make_is_shown_with_its_reason():
    cold, cold2 = Config(224, 1, SLOW), Config(224, 2, SLOW)
    runs = {cold: epochs([3.0, 2.0, 2.0], workers_doubled=None), cold2: epochs([2.0, 1.5, 1.6])}
    (row,) = rows(runs)
    assert row.comparison is None and row.why == "because"
    assert "| not predicted (because) |" in table([row])
    assert summary([row]) == ["no prediction could be compared with a measurement"]


def test_verdicts_pass_on_a_good_run():
    a, b, c = Config(64, 1, SLOW), Config(64, 2, SLOW), Config(64, 4, SLOW)
    runs = {a: epochs([2.0, 2.0, 2.1, 1.9], workers_doubled=[1.0, 1.52, 1.5, 1.48]),
            b: epochs([1.6, 1.5, 1.45, 1.55], workers_doubled=[1.0, 1.2, 1.25, 1.3]),
            c: epochs([1.3, 1.2, 1.3, 1.25])}
    lines = summary(rows(runs))
    assert [line.split(": ")[-1] for line in lines[:3]] == ["PASS"] * 3, lines
    assert label(c) == "64 px, 4 workers, cold 4 MiB/s" and label(Config(224, 1, CACHED)) == "224 px, 1 worker, cached"


def test_the_throttle_says_why_it_cannot_be_had(monkeypatch, tmp_path):
    from bench import blkio
    monkeypatch.setattr(blkio.os, "geteuid", lambda: 1000)
    assert blkio.unavailable() == "needs root (blkio cgroups, losetup and mount)"
    monkeypatch.setattr(blkio.os, "geteuid", lambda: 0)
    monkeypatch.setattr(blkio, "BLKIO", str(tmp_path))
    assert blkio.unavailable() == "needs cgroup v1 blkio mounted at {}".format(tmp_path)


def test_the_compute_drift_against_the_predicted_compute_is_shown_beside_the_bar():
    """The cached run's steps took 0.4 s longer than the cold run's prediction assumed: its 0.35 s error is
    outside its bar (spreads 0) but no larger than the compute's move; the doubled workers' prediction assumed
    the steps' compute grows with the CPU sharing and the measured run's matched it: no move, nothing covers
    its error."""
    cold, cached, cached2 = Config(64, 1, SLOW), Config(64, 1, CACHED), Config(64, 2, CACHED)
    runs = {cold: epochs([9.0, 6.0, 6.0], dataset_cached=[5.0, 4.05, 4.05]),
            cached: epochs([5.0, 4.4, 4.4], workers_doubled_storage_scales=[3.0, 2.8, 2.8]),
            cached2: epochs([4.0, 3.0, 3.0])}
    for records, compute, predicted in ((runs[cold], 2.0, {"dataset_cached": 2.0}),
                                        (runs[cached], 2.4, {"workers_doubled_storage_scales": 2.5}),
                                        (runs[cached2], 2.5, {})):
        for record in records:
            record["compute_s"], record["predicted_compute_s"] = compute, predicted
    result = {r.what_if: r.comparison for r in rows(runs, table=SPREADS_ONLY)}
    caching = result["dataset_cached"]
    assert caching.compute_drift == pytest.approx(0.20)  # 2.4 s measured against the 2.0 s predicted
    assert caching.error == pytest.approx(4.05 / 4.4 - 1) and caching.error_sd == pytest.approx(0.0)
    assert not caching.inside_bar and caching.compute_covers
    doubling = result["workers_doubled_storage_scales"]
    assert doubling.compute_drift == pytest.approx(0.0) and not doubling.inside_bar and not doubling.compute_covers
    assert "| +20 % |" in table(rows(runs))
    assert summary(rows(runs))[-1] == ("compute moved from the predicted: median 10.0 %, largest 20.0 %; the "
                                       "errors outside their bar that the compute's move covers: 1 of 2")
    without = {r.what_if: r.comparison for r in rows({k: [dict(e, predicted_compute_s={}) for e in v]
                                                       for k, v in runs.items()})}
    assert without["dataset_cached"].compute_drift is None and without["dataset_cached"].compute_covers is None


def test_repeats_pool_so_the_spread_holds_the_drift_between_runs():
    """The same configuration measured twice, the machine 10 % slower the second time: pooled, its spread holds
    that drift, and a prediction from one run is judged against it."""
    cold, cached = Config(64, 1, SLOW), Config(64, 1, CACHED)
    first, second = epochs([5.0, 4.0, 4.0, 4.0]), epochs([5.5, 4.4, 4.4, 4.4])
    runs = {cold: epochs([9.0, 6.0, 6.0, 6.0], dataset_cached=[5.0, 4.4, 4.4, 4.4]), cached: first + second}
    (row,) = rows(runs)
    assert row.comparison.measured[0] == pytest.approx(4.2)
    assert row.comparison.measured[1] == pytest.approx(statistics.stdev([4.0] * 3 + [4.4] * 3))
    assert row.comparison.inside_bar  # +4.8 % against a bar of 5.5 %; the first run alone: +10 ± 0 %, outside
    assert not rows({cold: runs[cold], cached: first})[0].comparison.inside_bar
    with pytest.raises(SystemExit):
        parse_args(["--repeats", "0"])


def test_a_storage_what_if_shows_the_rate_the_measured_readers_got():
    """The "8 MiB/s" throttle served its readers 20 % faster (burst credit): shown beside the error."""
    slow, fast = Config(64, 1, SLOW), Config(64, 1, FAST)
    served = [dict(e, read_s=1.0) for e in epochs([2.0, 1.4, 1.5, 1.6])]
    runs = {slow: epochs([3.0, 2.0, 2.0, 2.0], **{storage_key(FAST): [2.0, 1.6, 1.7, 1.8]}), fast: served}
    epoch_bytes = {(64, 0): 1.2 * FAST}  # each epoch reads the whole dataset in 1 s of reading
    result = {r.what_if: r for r in rows(runs, epoch_bytes)}
    assert result[storage_key(FAST)].storage_drift == pytest.approx(0.2, rel=1e-5)
    assert result[storage_key(SLOW)].comparison is None  # the fast run replayed no slow storage
    assert "| +20 % |" in table(rows(runs, epoch_bytes))
    assert summary(rows(runs, epoch_bytes))[-2] == \
        "storage what-ifs: the measured configuration's readers got +20 % of the rate the what-if names"
    assert {r.what_if: r for r in rows(runs)}[storage_key(FAST)].storage_drift is None  # no size: no claim


def test_ds_analyzers_epoch_is_bound_by_the_slowest_of_compute_preprocessing_and_storage():
    """Steps 2.0 s and host 0.2 s, preprocessing 6.0 s of the workers' time, loader start-up and shutdown
    0.4 s, 40 MiB an epoch."""
    record = {"compute_s": 2.0, "host_overhead_s": 0.2, "preprocess_s": 6.0, "loader_startup_s": 0.3,
              "loader_shutdown_s": 0.1}
    assert analytic_epoch(record, 2, CACHED, None) == pytest.approx(6.0 / 2 + 0.4)  # preprocessing-bound
    assert analytic_epoch(record, 4, CACHED, None) == pytest.approx(2.2 + 0.4)  # compute-bound
    assert analytic_epoch(record, 4, SLOW, 40.0 * MIB) == pytest.approx(10.0 + 0.4)  # 40 MiB at 4 MiB/s
    assert analytic_epoch(record, 4, SLOW, None) is None  # no size: no storage bound
    assert analytic_epoch(dict(record, preprocess_s=None), 1, CACHED, None) is None


def matter_runs(dsa_preprocess):
    """A storage-bound pair (cold 10.0 s -> cached 4.0 s: -60 %, replayed 4.2 s) and a workers pair that
    changes 5 % (cached 4.0 -> 3.8 s); DS-Analyzer's cached epoch is the cold run's preprocessing."""
    cold, cached, cached2 = (Config(64, w, storage, 384, 0, 40) for w, storage in ((1, SLOW), (1, CACHED),
                                                                                     (2, CACHED)))
    runs = {cold: epochs([12.0, 10.0, 10.4, 9.6], dataset_cached=[5.0, 4.2, 4.4, 4.0]),
            cached: epochs([5.0, 4.0, 4.2, 3.8], workers_doubled_storage_scales=[3.0, 3.9, 3.9, 3.9]),
            cached2: epochs([4.5, 3.8, 3.8, 3.8])}
    for record in runs[cold]:
        record.update(compute_s=2.0, preprocess_s=dsa_preprocess)
    return runs


def test_the_baselines_and_the_cases_that_matter_are_scored_beside_the_replay():
    result = {r.what_if: r for r in rows(matter_runs(dsa_preprocess=3.0))}
    caching, doubling = result["dataset_cached"], result["workers_doubled_storage_scales"]
    assert caching.change == pytest.approx(-0.6) and caching.matters()
    assert caching.no_change == pytest.approx(10.0 / 4.0 - 1) and caching.analytic == pytest.approx(3.0 / 4.0 - 1)
    assert caching.comparison.error == pytest.approx(0.05)
    assert doubling.change == pytest.approx(-0.05) and not doubling.matters()  # under 20 %: not counted
    assert doubling.analytic is None  # the cached run's records carry no compute
    assert "| -5 % (not counted) |" in table(list(result.values()))
    lines = judged(list(result.values()))
    assert lines[0] == "cases that matter (measured change >= 20 %): 1 of 2 comparisons"
    # the replay's bar: 4.2 ± 0.2 s against 4.0 ± 0.2 s, ± 7 %
    assert lines[3:6] == ["| replay | 5.0 % | 5.0 % | 1 of 1 | 1 of 1 |",
                          "| no change | 150.0 % | 150.0 % | 0 of 1 | 0 of 1 |",
                          "| DS-Analyzer | 25.0 % | 25.0 % | 0 of 1 | 0 of 1 |"]
    assert lines[6] == "replay: median |error| 5.0 % (target <= 10 %): PASS; worst 5.0 % (target <= 25 %): PASS"
    assert lines[7] == ("replay's median 5.0 % against half of each baseline's: no change 150.0 % / 2: PASS; "
                        "DS-Analyzer 25.0 % / 2: PASS")
    # DS-Analyzer 4.1 s for 4.0 s: +2.5 %, the replay's 5 % is more than half of it
    assert judged(rows(matter_runs(dsa_preprocess=4.1)))[7].endswith("DS-Analyzer 2.5 % / 2: FAIL")


def test_the_calibration_table_is_the_rms_error_per_kind_of_what_if():
    runs = matter_runs(dsa_preprocess=3.0)
    slow, fast = Config(64, 1, SLOW, 384, 0, 40), Config(64, 1, FAST, 384, 0, 40)
    for record in runs[slow]:
        record["predicted_duration_s"][storage_key(FAST)] = 6.0
    runs[fast] = epochs([6.0, 5.0, 5.0, 5.0], **{storage_key(SLOW): [9.0, 9.0, 9.0, 9.0]})  # no dataset_cached
    table_ = calibration_table(rows(runs), "the source")
    assert table_["version"] == 1 and table_["source"] == "the source"
    kinds = table_["kinds"]
    assert set(kinds) == {"dataset_cached", "workers_doubled_storage_scales", "storage_bps"}
    assert kinds["storage_bps"]["cases"] == 2  # 4 -> 8 MiB/s: +20 %; 8 -> 4: -10 %
    assert kinds["storage_bps"]["relative_error"] == pytest.approx(math.sqrt((0.2 ** 2 + 0.1 ** 2) / 2), abs=5e-5)
    assert kinds["workers_doubled_storage_scales"] == {"relative_error": round(3.9 / 3.8 - 1, 4), "cases": 1}
    assert kinds["dataset_cached"] == {"relative_error": pytest.approx(0.05), "cases": 1}  # the 8 MiB/s run's: none


def test_a_full_run_writes_the_calibration_table(monkeypatch, tmp_path):
    """main() with the trainer runs replaced by hand-made records (cached half: no slow disk): the table holds
    the two workers cases (+10 %, -20 %) and names the command and the load."""
    from bench import whatif_accuracy

    def fake_dataset(folder, key, batch_size, quality):
        out = tmp_path / "{}-{}".format(*key)
        out.mkdir()
        (out / "a.jpg").write_bytes(b"x" * 1000)
        return str(out)

    def fake_measure(configs, datasets, args, rates, work, group):
        for config in configs:
            predicted = 3.3 if config.cpus == 1 else 2.4
            yield config, epochs([5.0, 4.0, 4.0], workers_doubled_storage_scales=predicted) \
                if config.workers == 1 else epochs([4.0, 3.0, 3.0])
    monkeypatch.setattr(whatif_accuracy.slowdisk, "unavailable", lambda: "needs /dev/fuse")
    monkeypatch.setattr(whatif_accuracy, "make_dataset", fake_dataset)
    monkeypatch.setattr(whatif_accuracy, "measure", fake_measure)
    path = tmp_path / "calibration.json"
    assert main(["--cases", "matter", "--calibration", str(path), "--out", str(tmp_path / "out.json"),
                 "--work", str(tmp_path / "work")]) == 0
    written = json.loads(path.read_text())
    assert written["kinds"] == {"workers_doubled_storage_scales": {
        "relative_error": round(math.sqrt((0.1 ** 2 + 0.2 ** 2) / 2), 4), "cases": 2}}
    assert calibration.load(str(path)).relative_errors == {"workers_doubled_storage_scales": round(
        math.sqrt((0.1 ** 2 + 0.2 ** 2) / 2), 4)}  # the report's reader takes it
    assert written["source"].startswith("bench/whatif_accuracy.py --cases matter --calibration ")
    assert "load average before " in written["source"] and "CPUs" in written["source"]
    with pytest.raises(SystemExit):
        parse_args(["--quick", "--calibration", str(path)])


def test_rescore_predicts_the_stored_epochs_again_from_their_timelines(tmp_path):
    """--rescore: an earlier run's records (its --out) whose predictions a changed model would make otherwise
    (here 99 s, stale) are predicted again from the timelines the trainer wrote, and scored; an epoch whose
    timeline is gone keeps what the trainer predicted."""
    from tests.trainer.test_machine_model import cold_one_core, epoch_s, timeline_of
    from trainer.machine import available_memory
    from trainer.timeline import run_folder
    cold, cached = Config(64, 1, SLOW, 768, 1, 20), Config(64, 1, CACHED, 768, 1, 20)
    timeline = timeline_of(cold_one_core(), workers=1)
    span = epoch_s(timeline)
    timeline.machine = Machine(1, 1.0, 1.0, busy_cpu_s=2.0, span_s=span)
    folder = tmp_path / "timelines"
    records = []
    for epoch in range(4):
        records.append({"run_id": "cold/1", "epoch": epoch, "complete": True, "duration_s": span, "compute_s": 1.0,
                        "predicted_duration_s": {"dataset_cached": 99.0}, "prediction_basis": {}})
        if epoch < 3:  # the last epoch's timeline is gone
            path = tmp_path / "timelines" / run_folder("", "cold/1") / "epoch-{}.json".format(epoch)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(dict(timeline.to_dict(), run_id="cold/1", epoch=epoch, duration_s=span)))
    stored = {"load_before": [0.1, 0.2, 0.3], "load_after": [0.4, 0.5, 0.6], "load_after_each_run": [0.7, 0.8],
              "argv": ["--cases", "matter"], "dataset_bytes": {"768 px x 20 batches": 2e6},
              "timelines": str(folder), "rates": [SLOW, FAST],
              "runs": [{"config": cold._asdict(), "records": records},
                       {"config": cached._asdict(), "records": epochs([2.3, 2.2, 2.1, 2.2])}]}
    (tmp_path / "stored.json").write_text(json.dumps(stored))
    out = tmp_path / "out.json"
    assert main(["--rescore", str(tmp_path / "stored.json"), "--out", str(out)]) == 0
    expected = what_ifs(timeline, span, timeline.machine, [SLOW, FAST], (2.0,), available_memory(), 2e6,
                        1.0)["dataset_cached"].seconds
    assert expected < 0.7 * span  # the reads' waits are gone: nothing like the stale 99 s
    written = json.loads(out.read_text())
    rescored = next(r for r in written["runs"] if r["config"]["storage"] == SLOW)["records"]
    assert [r["predicted_duration_s"]["dataset_cached"] for r in rescored] == pytest.approx(
        [expected, expected, expected, 99.0])
    row = next(r for r in written["rows"] if r["what_if"] == "dataset_cached")
    assert row["comparison"]["predicted"][0] == pytest.approx(statistics.mean([expected, expected, 99.0]))
    assert written["load_after"] == [0.4, 0.5, 0.6] and written["timelines"] == str(folder)
    assert main(["--rescore", str(tmp_path / "missing.json"), "--out", str(out)]) == 1
