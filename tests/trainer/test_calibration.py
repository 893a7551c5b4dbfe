"""A what-if's bar (trainer/calibration.py): the epochs' spread widened by Student's t for their number, combined
with the model's own error from the accuracy bench's table; a missing or damaged table is one line and every bar
marked not calibrated; the shipped table travels with the package."""
import json
import math
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from trainer import calibration
from trainer.results import print_summary

P = 0.5 * (1 + math.erf(1 / math.sqrt(2)))  # 0.8413: one sigma's upper quantile


def table(tmp_path, kinds: dict) -> calibration.Calibration:
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"version": 1, "source": "test", "kinds": kinds}))
    return calibration.load(str(path))


def test_the_small_sample_factor_is_student_t_at_one_sigma():
    assert calibration.student_t(2) == pytest.approx(math.tan(math.pi * (P - 0.5)), rel=1e-6)  # 1 dof: Cauchy, 1.84
    assert calibration.student_t(3) == pytest.approx((2 * P - 1) / math.sqrt(2 * P * (1 - P)), rel=1e-6)  # 1.32
    assert 1.0 < calibration.student_t(200) < 1.01  # many epochs: the normal's one sigma
    with pytest.raises(ValueError):
        calibration.student_t(1)


def test_the_bar_holds_the_model_error_for_its_kind_beside_the_widened_spread(tmp_path):
    """n = 2 epochs predicting 10.0005 ± 0.0007 s (the issue's case): the model's 8 % error dominates the bar."""
    known = table(tmp_path, {"storage_bps": {"relative_error": 0.08, "cases": 10}})
    bar = calibration.bar(10.0005, 0.0007, 2, "storage_bps=4e+06", known)
    assert bar.seconds == pytest.approx(math.hypot(1.8373 * 0.0007, 0.08 * 10.0005), rel=1e-4)  # 0.80 s, not 0.0007
    assert bar.relative_error == 0.08 and "8.0 % error for storage_bps (accuracy bench, 10 cases)" in bar.note
    alone = calibration.bar(10.0, 0.5, 3, "compute_speedup=2", known)  # a kind the bench cannot check on a CPU
    assert alone.seconds == pytest.approx(1.3213 * 0.5, rel=1e-4) and alone.relative_error is None
    assert alone.note.startswith("not calibrated (the accuracy bench has no compute_speedup cases)")
    assert calibration.spread_bar(0.5, 2) == pytest.approx(1.8373 * 0.5, rel=1e-4)
    assert calibration.spread_bar(None, 1) == 0.0


@pytest.mark.parametrize("content, says", [
    (None, "No such file or directory"),
    ("{not json", "Expecting property name"),
    (json.dumps({"version": 2, "kinds": {}}), 'not a version 1 table with "kinds"'),
    (json.dumps({"version": 1, "kinds": {"dataset_cached": {"relative_error": -0.1, "cases": 3}}}),
     "kind 'dataset_cached' needs a relative_error >= 0 and cases > 0"),
    (json.dumps({"version": 1, "kinds": {"dataset_cached": 0.1}}), "kind 'dataset_cached' needs"),
])
def test_a_missing_or_damaged_table_is_one_line_and_every_bar_not_calibrated(tmp_path, content, says):
    path = tmp_path / "calibration.json"
    if content is not None:
        path.write_text(content)
    bad = calibration.load(str(path))
    assert bad.relative_errors == {} and "\n" not in bad.problem
    assert bad.problem.startswith("what-if calibration table {}: ".format(path)) and says in bad.problem
    assert bad.problem.endswith("set EDGESCOPE_WHATIF_CALIBRATION to a table bench/whatif_accuracy.py wrote)")
    bar = calibration.bar(10.0, 0.1, 2, "dataset_cached", bad)
    assert bar.relative_error is None and bar.note.startswith("not calibrated (what-if calibration table ")


def epoch(number: int, seconds: float, predicted: dict) -> dict:
    return {"epoch": number, "complete": True, "duration_s": seconds, "fetch_stall_s": 0.5, "compute_s": 3.0,
            "overhead_s": 0.1, "predicted_duration_s": predicted}


def test_the_trainers_summary_prints_the_same_bar(tmp_path, monkeypatch, capsys):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"version": 1, "kinds": {"dataset_cached": {"relative_error": 0.1, "cases": 4}}}))
    monkeypatch.setenv(calibration.ENVIRONMENT, str(path))
    history = [epoch(0, 9.0, {}), epoch(1, 5.0, {"dataset_cached": 3.9, "compute_speedup=2": 4.0}),
               epoch(2, 5.2, {"dataset_cached": 4.1, "compute_speedup=2": 4.2})]
    print_summary(history)
    captured = capsys.readouterr()
    line = captured.out.splitlines()[-1]
    assert line.startswith("what-if, epoch replayed (mean ± bar over the same epochs: their spread × Student t 1.84 "
                           "for n=2 and the model's error")
    # 4.0 ± hypot(1.84 × 0.141, 0.1 × 4.0) = 0.47; compute_speedup's spread alone, 0.26, says so
    assert "dataset_cached 4.0 ± 0.5 s" in line
    assert "compute_speedup=2 4.1 ± 0.3 s (not calibrated: its bar is the epochs' spread alone)" in line
    assert captured.err == ""
    path.write_text("[]")
    print_summary(history)
    captured = capsys.readouterr()
    assert captured.err == "edgescope-train: note: what-if calibration table {}: not a version 1 table with " \
        "\"kinds\"; every what-if's bar is its epochs' spread alone, marked not calibrated (reinstall edgescope, " \
        "or set EDGESCOPE_WHATIF_CALIBRATION to a table bench/whatif_accuracy.py wrote)\n".format(path)
    assert "dataset_cached 4.0 ± 0.3 s (not calibrated" in captured.out


def test_the_shipped_table_is_read_and_travels_in_the_wheel(tmp_path, monkeypatch):
    """Boards install with pip install --no-deps .: the table must be package data, read without the source."""
    monkeypatch.delenv(calibration.ENVIRONMENT)
    shipped = calibration.load()
    assert shipped.problem is None and shipped.path == calibration.TABLE
    assert set(shipped.relative_errors) >= {"dataset_cached", "workers_doubled", "workers_doubled_storage_scales",
                                           "storage_bps"}
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    source = tmp_path / "source"  # the build's own copy (pip builds in the tree it is given): the trainer alone
    shutil.copytree(os.path.join(repo, "trainer"), str(source / "trainer"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(repo, name), str(source))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(tmp_path), str(source)], check=True, timeout=300)
    wheel, = tmp_path.glob("edgescope-*.whl")
    with zipfile.ZipFile(str(wheel)) as archive:
        assert json.loads(archive.read("trainer/whatif_calibration.json")) == json.loads(
            open(calibration.TABLE, encoding="utf-8").read())
