"""edgescope-train on a real full disk (a filled tmpfs, root only): every file it writes keeps its previous
content whole, and the failure is one line naming the file and the fix, exit 2, no traceback. Also a torn
last line of --results, left by an earlier crash, is set aside rather than joined onto."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys

from tests.exporter.test_atomicfile import WRITER
from tests.fulldisk import PAGE, disk, full_disk  # noqa: F401  (the fixture)
from tests.processes import REPO
from trainer import cli
from trainer.models import build_model

from .conftest import small_run_args

FULL = "No space left on device (0.0 MB free there)"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("edgescope-train: cannot write ") and err.count("\n") == 1, err
    return err


def page_of_results() -> bytes:
    """Old --results content exactly one page long: a new record needs a page of its own, so a full tmpfs
    refuses it (an append that still fits the last page would succeed)."""
    line = json.dumps({"run_id": "old", "epoch": 0, "pad": ""})
    pad = PAGE - 2 * (len(line) + 1)
    lines = [json.dumps({"run_id": "old", "epoch": 0, "pad": "x" * pad}), line]
    data = ("\n".join(lines) + "\n").encode()
    assert len(data) == PAGE
    return data


def test_results_on_a_full_disk(cifar_dir, tmp_path, capsys, disk):
    path = disk.path("results.jsonl")
    with open(path, "wb") as f:
        f.write(page_of_results())
    disk.fill()
    args = small_run_args(cifar_dir, str(tmp_path)) + ["--results", path, "--epochs", "1"]
    assert cli.main(args) == 2
    err = one_line_error(capsys)
    assert "results {}: {}; free space or pick another --results".format(path, FULL) in err
    assert open(path, "rb").read() == page_of_results()


def test_checkpoint_on_a_full_disk(cifar_dir, tmp_path, capsys, disk):
    os.mkdir(disk.path("ckpt"))
    path = disk.path("ckpt", "checkpoint.pt")
    with open(path, "wb") as f:
        f.write(b"the previous checkpoint")
    disk.fill()
    args = small_run_args(cifar_dir, str(tmp_path)) + ["--checkpoint-dir", disk.path("ckpt"), "--epochs", "1"]
    assert cli.main(args) == 2
    err = one_line_error(capsys)
    assert "checkpoint {}: ".format(path) in err and "; free space or pick another --checkpoint-dir" in err
    assert open(path, "rb").read() == b"the previous checkpoint"
    assert os.listdir(disk.path("ckpt")) == ["checkpoint.pt"]  # no temporary file left behind


def test_metrics_textfile_on_a_full_disk(cifar_dir, tmp_path, capsys, disk):
    path = disk.path("run.prom")
    with open(path, "wb") as f:
        f.write(b"edgescope_train_running 0\n")
    disk.fill()
    args = small_run_args(cifar_dir, str(tmp_path)) + ["--metrics-textfile", path, "--epochs", "1"]
    assert cli.main(args) == 2
    err = one_line_error(capsys)
    assert "metrics textfile {}: {}; free space or pick another --metrics-textfile".format(path, FULL) in err
    assert open(path, "rb").read() == b"edgescope_train_running 0\n"
    assert sorted(os.listdir(disk.root)) == ["filler", "run.prom"]


def test_a_torn_last_result_is_set_aside_not_joined_onto(cifar_dir, tmp_path, capsys):
    path = str(tmp_path / "results.jsonl")
    with open(path, "w") as f:
        f.write('{"run_id": "old", "epoch": 0}\n{"run_id": "old", "ep')  # a crash cut this record short
    assert cli.main(small_run_args(cifar_dir, str(tmp_path)) + ["--epochs", "1"]) == 0
    err = capsys.readouterr().err
    assert "note: {} ended in a torn line".format(path) in err and "moved to {}.torn".format(path) in err
    with open(path) as f:
        records = [json.loads(line) for line in f]  # every line whole
    assert [r["run_id"] for r in records][0] == "old" and len(records) == 2
    assert open(path + ".torn").read() == '{"run_id": "old", "ep\n'


def completed_epochs(path: str) -> list:
    with open(path) as f:
        return [r["epoch"] for r in map(json.loads, f) if r.get("run_id") != "old" and r["complete"]]


def test_a_full_disk_while_checkpointing_never_repeats_an_epoch(cifar_dir, tmp_path, capsys):
    """The checkpoint after epoch 1 does not fit (room for one checkpoint, not for its replacement beside it):
    epoch 1's record is not written either, so the resume that redoes epoch 1 leaves --results 0, 1 (it was
    0, 1, 1 when the record went first)."""
    model = build_model("mobilenet_v3_small", num_classes=10)
    model_kib = sum(t.numel() * t.element_size() for t in model.state_dict().values()) // 1024
    args = small_run_args(cifar_dir, str(tmp_path))
    results = args[args.index("--results") + 1]
    with full_disk(3 * model_kib) as fs:  # a checkpoint holds the weights and SGD's momentum: about twice them
        assert cli.main(args + ["--checkpoint-dir", fs.path("ckpt"), "--run-id", "r"]) == 2
        err = capsys.readouterr().err
        assert re.search(r"^edgescope-train: cannot write checkpoint \S+: No space left on device \([\d.]+ MB free "
                         r"there\); free space or pick another --checkpoint-dir\n$", err), err
        assert completed_epochs(results) == [0]
        assert os.listdir(fs.path("ckpt")) == ["checkpoint.pt"]
        shutil.copytree(fs.path("ckpt"), str(tmp_path / "ckpt"))
    assert cli.main(args + ["--checkpoint-dir", str(tmp_path / "ckpt"), "--resume"]) == 0
    assert completed_epochs(results) == [0, 1]


def test_a_record_lost_after_its_checkpoint_is_added_on_resume(cifar_dir, tmp_path, capsys, disk):
    """--results full after epoch 0's checkpoint was saved: the resume adds epoch 0 from the checkpoint (a note
    says so) before epoch 1, so no epoch is skipped."""
    path = disk.path("results.jsonl")
    with open(path, "wb") as f:
        f.write(page_of_results())
    disk.fill()
    args = small_run_args(cifar_dir, str(tmp_path)) + ["--results", path, "--checkpoint-dir", str(tmp_path / "c")]
    assert cli.main(args) == 2
    assert "cannot write results {}: {}".format(path, FULL) in capsys.readouterr().err
    assert completed_epochs(path) == []
    os.unlink(disk.path("filler"))
    assert cli.main(args + ["--resume"]) == 0
    assert "--results {} lacked epoch(s) 0 of run".format(path) in capsys.readouterr().err
    assert completed_epochs(path) == [0, 1]
    assert open(path, "rb").read().startswith(page_of_results())


def test_a_half_written_checkpoint_left_by_sigkill_is_removed_at_the_next_start(cifar_dir, tmp_path, capsys):
    """A writer of checkpoint.pt killed by SIGKILL mid-write leaves its temporary file (12 MB for this model);
    the next run in that --checkpoint-dir removes it at start, with a note."""
    folder = tmp_path / "ckpt"
    folder.mkdir()
    path = str(folder / "checkpoint.pt")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, path], cwd=REPO, stdout=subprocess.PIPE)
    assert writer.stdout.readline() == b"writing\n"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    (stale,) = os.listdir(str(folder))
    args = small_run_args(cifar_dir, str(tmp_path)) + ["--checkpoint-dir", str(folder), "--epochs", "1"]
    assert cli.main(args) == 0
    assert "note: removed {}, a checkpoint a killed run left half-written".format(folder / stale) in \
        capsys.readouterr().err
    assert os.listdir(str(folder)) == ["checkpoint.pt"]
