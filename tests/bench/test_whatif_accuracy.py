"""bench/whatif_accuracy.py's arithmetic on hand-made records (no trainer runs): which configuration predicts
which, the error and its bar, the table and the verdicts."""
import math
import statistics

import pytest

from bench.whatif_accuracy import (CACHED, MIB, Config, Row, compare, kept, label, pairings, parse_args, plan, rows,
                                   storage_key, summary, table)
from trainer.machine import Machine
from trainer.timeline import Timeline, what_ifs

SLOW, FAST = 4 * MIB, 8 * MIB


def epochs(durations, **predicted):
    """Records as the trainer's --results writes them: epoch 0 first, one predicted value per epoch."""
    out = []
    for i, duration in enumerate(durations):
        values = {name: (v[i] if isinstance(v, list) else v) for name, v in predicted.items()}
        out.append({"epoch": i, "complete": True, "duration_s": duration, "predicted_duration_s": values,
                    "prediction_basis": {name: "because" if v is None else "replayed" for name, v in values.items()}})
    return out


def test_the_plan_and_its_pairings_follow_the_grid():
    configs = plan([64, 224], [1, 2, 4], [SLOW, FAST], storage_workers=1, cold=True)
    assert len(configs) == 14 and configs[0] == Config(64, 1, CACHED) and configs[6] == Config(64, 1, FAST)
    assert plan([64], [1, 2], [SLOW], 1, cold=False) == [Config(64, 1, CACHED), Config(64, 2, CACHED)]
    pairs = pairings(configs)
    assert all(t.size == s.size for t, s, _ in pairs)  # never across image sizes
    for_64 = {(t, s, name) for t, s, name in pairs if t.size == 64}
    assert for_64 == {
        (Config(64, 1, CACHED), Config(64, 1, SLOW), "dataset_cached"),
        (Config(64, 1, CACHED), Config(64, 1, FAST), "dataset_cached"),
        (Config(64, 2, CACHED), Config(64, 2, SLOW), "dataset_cached"),
        (Config(64, 4, CACHED), Config(64, 4, SLOW), "dataset_cached"),
        (Config(64, 2, CACHED), Config(64, 1, CACHED), "workers_doubled_storage_scales"),
        (Config(64, 4, CACHED), Config(64, 2, CACHED), "workers_doubled_storage_scales"),
        (Config(64, 2, SLOW), Config(64, 1, SLOW), "workers_doubled"),
        (Config(64, 4, SLOW), Config(64, 2, SLOW), "workers_doubled"),
        (Config(64, 1, SLOW), Config(64, 1, FAST), storage_key(SLOW)),
        (Config(64, 1, FAST), Config(64, 1, SLOW), storage_key(FAST)),
    }
    assert len(pairs) == 20


def test_the_storage_what_if_is_named_as_the_trainer_names_it():
    # the trainer parses --what-if-storage-bps as a float and names the what-if with {:g}: 8.38861e+06
    names = what_ifs(Timeline(), 1.0, Machine(2, 0.0), [float(FAST)], [2.0], None, None)
    assert storage_key(FAST) in names and storage_key(FAST) == "storage_bps=8.38861e+06"


def test_kept_epochs_drop_the_warm_up_and_interrupted_ones():
    records = epochs([5.0, 1.0, 2.0, 3.0])
    records[3]["complete"] = False
    assert [r["epoch"] for r in kept(records)] == [1, 2]


def test_error_its_bar_and_the_noise_verdict():
    c = compare([9.0, 11.0], [11.0, 13.0])  # 10 ± 1.41 against 12 ± 1.41
    assert c.predicted == pytest.approx((10.0, math.sqrt(2))) and c.measured == pytest.approx((12.0, math.sqrt(2)))
    assert c.error == pytest.approx(-1 / 6)
    assert c.error_sd == pytest.approx(10 / 12 * math.hypot(math.sqrt(2) / 10, math.sqrt(2) / 12))
    assert c.within_noise and not c.inside_bar  # the intervals overlap, yet the error is outside its own bar
    exact = compare([10.0, 10.0], [11.0, 13.0])
    assert exact.error_sd == pytest.approx(10 / 12 * math.sqrt(2) / 12) and not exact.within_noise
    close = compare([11.5, 12.5], [11.0, 13.0])
    assert close.error == pytest.approx(0.0) and close.inside_bar and close.within_noise


def test_rows_table_and_summary_from_hand_made_runs():
    cold, cached, cached2 = Config(64, 1, SLOW), Config(64, 1, CACHED), Config(64, 2, CACHED)
    runs = {
        cold: epochs([9.0, 6.0, 6.2, 5.8], dataset_cached=[9.0, 4.4, 4.6, 4.5], workers_doubled=None),
        cached: epochs([5.0, 4.0, 4.2, 4.1], workers_doubled_storage_scales=[3.0, 2.0, 2.0, 2.0]),
        cached2: epochs([4.0, 3.0, 3.1, 3.2]),
    }
    result = {(r.target, r.source, r.what_if): r for r in rows(runs)}
    assert set(result) == {(cached, cold, "dataset_cached"), (cached2, cached, "workers_doubled_storage_scales")}
    caching = result[(cached, cold, "dataset_cached")].comparison
    assert caching.measured[0] == pytest.approx(4.1) and caching.predicted[0] == pytest.approx(4.5)
    assert caching.error == pytest.approx(4.5 / 4.1 - 1)  # the warm-up epoch's 9 s and 5 s left out
    doubling = result[(cached2, cached, "workers_doubled_storage_scales")].comparison
    assert doubling.error == pytest.approx(2.0 / 3.1 - 1) and not doubling.inside_bar
    text = table(rows(runs))
    assert text.splitlines()[0].startswith("| configuration measured | predicted from |")
    assert "| 64 px, 1 worker, cached | 64 px, 1 worker, cold 4 MiB/s: `dataset_cached` | 4.50 ± 0.10 s | " \
           "4.10 ± 0.10 s | +10 ± 4 % | no |" in text
    assert "| 2.000 ± 0 s | 3.10 ± 0.10 s | -35 ± 2 % | no |" in text  # identical epochs: the mean to four significant digits, ± 0
    lines = summary(rows(runs))
    assert lines[0].startswith("median |error| 22.6 % (target <= 10 %): FAIL")
    assert "worst |error| 35.5 % (64 px, 2 workers, cached from 64 px, 1 worker, cached" in lines[1]
    assert lines[1].endswith("FAIL") and lines[2] == "errors inside their own bar: 0 of 2 (target: all): FAIL"
    assert lines[3].startswith("inside once their bar 0 %, twice 0 % (")  # +10 ± 4 %, -35 ± 2 %


def test_the_bars_calibration_counts_errors_inside_twice_their_bar():
    a, b = Config(64, 1, SLOW), Config(64, 2, SLOW)
    between = Row(b, a, "workers_doubled", compare([9.0, 11.0], [11.0, 13.0]), "")  # -17 ± 15 %: 1.1 bars
    inside = Row(b, a, "workers_doubled", compare([11.5, 12.5], [11.0, 13.0]), "")
    assert summary([between, inside])[3].startswith("inside once their bar 50 %, twice 100 % (")


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
    result = {r.what_if: r.comparison for r in rows(runs)}
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
    epoch_bytes = {64: 1.2 * FAST}  # each epoch reads the whole dataset in 1 s of reading
    result = {r.what_if: r for r in rows(runs, epoch_bytes)}
    assert result[storage_key(FAST)].storage_drift == pytest.approx(0.2, rel=1e-5)
    assert result[storage_key(SLOW)].comparison is None  # the fast run replayed no slow storage
    assert "| +20 % |" in table(rows(runs, epoch_bytes))
    assert summary(rows(runs, epoch_bytes))[-2] == \
        "storage what-ifs: the measured configuration's readers got +20 % of the rate the what-if names"
    assert {r.what_if: r for r in rows(runs)}[storage_key(FAST)].storage_drift is None  # no size: no claim
