"""Progress bars appear on a terminal and nowhere else: edgescope-dataset and edgescope-train, each run
once on a pseudo-terminal and once into a pipe."""
import re
import subprocess
import sys

from tests.terminal import run_on_terminal

from .conftest import REPO, cli_env, small_run_args

def redraws(text: str) -> bool:
    """A carriage return that does not end a line: tqdm redrawing its bar (a terminal turns each \\n into \\r\\n)."""
    return re.search(r"\r(?!\n)", text) is not None


def test_edgescope_dataset_shows_a_bar_on_a_terminal_only(tmp_path):
    cmd = [sys.executable, "-m", "trainer.datasets_cli", "imagefolder", "--images", "40", "--image-size", "16"]
    code, shown = run_on_terminal(cmd + ["--out", str(tmp_path / "tty")], cli_env(), REPO)
    assert code == 0, shown
    assert "writing" in shown and "40/40" in shown and redraws(shown)
    assert "edgescope-dataset: wrote 40 JPEG images" in shown
    piped = subprocess.run(cmd + ["--out", str(tmp_path / "pipe")], env=cli_env(), cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.splitlines() == ["edgescope-dataset: wrote 40 JPEG images of 16x16 px ({} MB) to {}".format(
        piped.stdout.split("(")[1].split(" MB")[0], tmp_path / "pipe")]
    assert "\r" not in piped.stdout + piped.stderr


def test_edgescope_train_shows_an_epoch_bar_on_a_terminal_only(cifar_dir, tmp_path):
    cmd = [sys.executable, "-m", "trainer.cli"] + small_run_args(cifar_dir, str(tmp_path)) + ["--log-interval", "2"]
    code, shown = run_on_terminal(cmd, cli_env(), REPO)
    assert code == 0, shown
    assert "epoch 1/2" in shown and "4/4" in shown and "samples/s, stall " in shown and redraws(shown)
    assert "epoch 0 step 2/4 loss" in shown and "epoch 1/2: E2E" in shown  # the log lines are still there
    piped = subprocess.run(cmd, env=cli_env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0, piped.stderr
    assert "samples/s" not in piped.stdout and "\r" not in piped.stdout + piped.stderr
    assert "epoch 1/2: E2E" in piped.stdout
