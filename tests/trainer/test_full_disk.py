"""edgescope-train on a real full disk (a filled tmpfs, root only): every file it writes keeps its previous
content whole, and the failure is one line naming the file and the fix, exit 2, no traceback. Also a torn
last line of --results, left by an earlier crash, is set aside rather than joined onto."""
import json
import os

from tests.fulldisk import PAGE, disk  # noqa: F401  (the fixture)
from trainer import cli

from .conftest import small_run_args

FULL = "No space left on device"


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
