"""edgescope-train end to end with real PyTorch on the CPU: the exposition
(live endpoint, textfile, promtool), results, signals, resume, bad input."""
import json
import os
import pickle
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from trainer import cli, safe_load
from trainer.results import LOAD_KEYS
from trainer.synthetic import write_jpeg_folder

from .conftest import REPO, cli_env, small_run_args


class Lines:
    """Reads a process's stdout in the background so a test can wait for a line."""

    def __init__(self, stream) -> None:
        self._lines = queue.Queue()  # type: queue.Queue
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in iter(stream.readline, ""):
            self._lines.put(line)
        self._lines.put("")

    def wait_for(self, pattern: str, timeout_s: float = 120.0) -> str:
        """The next line matching ``pattern``; fails if the process ends or timeout_s passes."""
        while True:
            line = self._lines.get(timeout=timeout_s)
            assert line, "process ended before printing {!r}".format(pattern)
            if re.search(pattern, line):
                return line


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def results(path: str) -> list:
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_live_endpoint_equals_textfile_counts_every_batch_and_passes_promtool(cifar_dir, tmp_path, launch):
    args = small_run_args(cifar_dir, str(tmp_path))
    args[args.index("--metrics-port") + 1] = "0"
    process = launch(args + ["--metrics-addr", "127.0.0.1", "--linger", "120", "--run-id", "t1",
                             "--label", "power_mode=MAXN"])
    lines = Lines(process.stdout)
    port = int(re.search(r"http://127\.0\.0\.1:(\d+)/metrics", lines.wait_for("metrics")).group(1))
    lines.wait_for("serving the final metrics")
    before = time.time()
    live = urllib.request.urlopen("http://127.0.0.1:{}/metrics".format(port), timeout=10).read().decode()
    after = time.time()
    textfile = (tmp_path / "run.prom").read_text()
    clock = [line for line in live.splitlines() if "edgescope_time_seconds" in line]
    assert len(clock) == 3 and before <= float(clock[-1].split()[1]) <= after  # HELP, TYPE, the value
    assert [line for line in live.splitlines() if line not in clock] == textfile.splitlines()  # the file: no clock

    records = results(str(tmp_path / "results.jsonl"))
    assert [(r["epoch"], r["complete"], r["batches"]) for r in records] == [(0, True, 4), (1, True, 4)]
    values = samples(textfile)
    run = (("run_id", "t1"),)
    for name in ("fetch_stall", "compute", "batch", "fetch_stall_storage", "fetch_stall_preprocess"):
        assert values[("edgescope_train_{}_seconds_count".format(name), run)] == 8
    assert values[("edgescope_train_fetch_stall_storage_seconds_sum", run)] + values[
        ("edgescope_train_fetch_stall_preprocess_seconds_sum", run)] == pytest.approx(
        values[("edgescope_train_fetch_stall_seconds_sum", run)])
    assert values[("edgescope_train_samples_total", run)] == 64
    assert values[("edgescope_train_running", run)] == 0
    for record in records:
        epoch = (("epoch", str(record["epoch"])), ("run_id", "t1"))
        assert values[("edgescope_train_epoch_duration_seconds", epoch)] == pytest.approx(record["duration_s"])
        assert values[("edgescope_train_epoch_fetch_stall_seconds", epoch)] == pytest.approx(record["fetch_stall_s"])
        assert values[("edgescope_train_epoch_compute_seconds", epoch)] == pytest.approx(record["compute_s"])
        assert record["duration_s"] >= record["fetch_stall_s"] + record["compute_s"] > 0
        for key, name in (("fetch_stall_storage_s", "epoch_fetch_stall_storage"),
                          ("fetch_stall_preprocess_s", "epoch_fetch_stall_preprocess"),
                          ("read_s", "epoch_read"), ("preprocess_s", "epoch_preprocess")):
            assert values[("edgescope_train_{}_seconds".format(name), epoch)] == pytest.approx(record[key])
        # CIFAR-10 is read whole at start-up: its batches' stall is all preprocessing
        assert record["read_s"] == record["fetch_stall_storage_s"] == 0 < record["preprocess_s"]
        assert record["fetch_stall_preprocess_s"] == pytest.approx(record["fetch_stall_s"])
    info = [labels for (name, labels) in values if name == "edgescope_train_run_info"]
    assert dict(info[0])["model"] == "mobilenet_v3_small" and dict(info[0])["power_mode"] == "MAXN"
    assert dict(info[0])["max_batches"] == "4" and "image_size" not in dict(info[0])  # CIFAR-10: always 32 px
    # its epochs covered 4 batches of 8 of the 160 samples a full epoch holds: the report tells them apart
    assert dict(info[0])["dataset_samples"] == "160"
    assert len(dict(info[0])["dataset_id"]) == 12  # which files it read (trainer.data.dataset_identity)
    assert {value for (name, _), value in values.items() if name == "edgescope_train_epoch_samples"} == {32.0}

    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run scripts/install-deps.sh"
    check = subprocess.run([promtool, "check", "metrics"], input=live, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    process.send_signal(signal.SIGTERM)  # during --linger: training is complete, the linger cut short
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    assert "Traceback" not in process.stderr.read()


@pytest.mark.parametrize("signum, workers, whole_group", [
    (signal.SIGTERM, "0", False),  # kill PID
    (signal.SIGINT, "2", True),  # Ctrl-C in a shell: the loader's workers get it too
])
def test_a_signal_mid_run_writes_results_and_metrics_and_exits_non_zero(cifar_dir, tmp_path, launch,
                                                                       signum, workers, whole_group):
    args = small_run_args(cifar_dir, str(tmp_path))
    args[args.index("--max-batches") + 1] = "20"
    args[args.index("--workers") + 1] = workers
    process = launch(args + ["--batch-size", "2", "--log-interval", "1", "--epochs", "8"])
    Lines(process.stdout).wait_for(r"epoch 1 step 3/")
    if whole_group:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    assert process.wait(timeout=60) == 128 + signum
    err = process.stderr.read()
    assert "stopped by signal" in err and "Traceback" not in err
    records = results(str(tmp_path / "results.jsonl"))
    # The signal lands some batches after that line (~20 ms each here: sent 0.3 s late, as a busy machine may, it
    # found epoch 1 at its last batch; 0.8 s late, in epoch 2): the epochs before it complete, the one it stopped not.
    *whole, stopped = records
    assert [(r["epoch"], r["complete"]) for r in records] == [(e, True) for e in range(len(whole))] + [
        (len(whole), False)]
    assert len(whole) >= 1 and 0 < stopped["batches"] <= 20
    values = samples((tmp_path / "run.prom").read_text())
    counted = [v for (name, _), v in values.items() if name == "edgescope_train_batch_seconds_count"]
    assert counted == [20 * len(whole) + stopped["batches"]]


def test_busy_port_is_one_line_without_traceback(cifar_dir, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        args = small_run_args(cifar_dir, str(tmp_path))
        args[args.index("--metrics-port") + 1] = str(port)
        done = subprocess.run([sys.executable, "-m", "trainer.cli"] + args + ["--metrics-addr", "127.0.0.1"],
                              cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "cannot serve metrics on 127.0.0.1:{}".format(port) in done.stderr and "--metrics-port" in done.stderr


@pytest.mark.parametrize("extra, expected", [
    (["--model", "alexnet"], "argument --model: invalid choice: 'alexnet'"),
    (["--dataset", "mnist"], "argument --dataset: invalid choice: 'mnist'"),
    (["--batch-size", "0"], "argument --batch-size"),
    (["--timing", "sometimes"], "argument --timing"),
    (["--linger", "-1"], "argument --linger"),
    (["--label", "device=x"], "argument --label"),
    (["--metrics-port", "70000"], "not a TCP port"),
    (["--resume"], "--resume needs --checkpoint-dir"),
    (["--dataset", "imagefolder", "--download"], "--download fetches CIFAR-10 only"),
    (["--data-dir", "/nonexistent/edgescope"], "data directory /nonexistent/edgescope does not exist"),
    (["--metrics-textfile", "/proc/edgescope/run.prom"], "cannot write metrics textfile /proc/edgescope/run.prom: "),
    (["--results", "/proc/edgescope/r.jsonl"], "cannot write results /proc/edgescope/r.jsonl: "),
    (["--device", "cuda:x"], "is not auto, cpu, cuda or cuda:N"),
    (["--device", "cuda:{}".format(torch.cuda.device_count())], "--device cuda:"),
] + ([] if torch.cuda.is_available() else [(["--device", "cuda"], "--device cuda but torch sees no CUDA device")]))
def test_bad_input_is_one_line(cifar_dir, tmp_path, capsys, extra, expected):
    assert cli.main(small_run_args(cifar_dir, str(tmp_path)) + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgescope-train: ") and err.count("\n") == 1 and expected in err, err


def test_cuda_n_makes_that_gpu_current_and_plain_cuda_leaves_the_current_one(monkeypatch):
    made_current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", made_current.append)
    assert cli._resolve_device("cuda:1") == torch.device("cuda:1")
    assert cli._resolve_device("cuda") == torch.device("cuda") and cli._resolve_device("cpu") == torch.device("cpu")
    assert made_current == [torch.device("cuda:1")]


def test_resume_continues_after_the_last_checkpoint(cifar_dir, tmp_path, capsys):
    checkpoints = str(tmp_path / "ckpt")
    args = small_run_args(cifar_dir, str(tmp_path)) + ["--checkpoint-dir", checkpoints]
    assert cli.main(args + ["--epochs", "1"]) == 0
    first = torch.load(os.path.join(checkpoints, "checkpoint.pt"))
    assert first["epoch"] == 0
    for record in first["history"]:  # as an older edgescope wrote it, without the stall split
        for key in LOAD_KEYS:
            del record[key]
    torch.save(first, os.path.join(checkpoints, "checkpoint.pt"))
    capsys.readouterr()
    assert cli.main(args + ["--epochs", "3", "--resume", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "epoch 0/" not in out and "epoch 1/3" in out and "epoch 2/3" in out
    assert "mean ± std over epochs 1..2 (n=2)" in out and "storage stall" in out
    records = results(str(tmp_path / "results.jsonl"))
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert len({r["run_id"] for r in records}) == 1
    last = torch.load(os.path.join(checkpoints, "checkpoint.pt"))
    assert last["epoch"] == 2 and len(last["history"]) == 3
    moved = [not torch.equal(first["model"][k], last["model"][k]) for k in first["model"] if "weight" in k]
    assert any(moved)


def test_resume_with_other_settings_is_one_line_naming_them(cifar_dir, tmp_path, capsys):
    """One run id, one configuration: a resume that would pool another batch size into its epochs is refused."""
    checkpoints = str(tmp_path / "ckpt")
    args = small_run_args(cifar_dir, str(tmp_path)) + ["--checkpoint-dir", checkpoints, "--run-id", "r"]
    assert cli.main(args + ["--epochs", "1"]) == 0
    capsys.readouterr()
    assert cli.main(args + ["--epochs", "2", "--resume", "--batch-size", "4", "--synthetic-input"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "was trained with batch_size=8, input=(unset), this run has batch_size=4, input=synthetic" in err
    assert [r["epoch"] for r in results(str(tmp_path / "results.jsonl"))] == [0]  # nothing lost, nothing added
    saved = torch.load(os.path.join(checkpoints, "checkpoint.pt"))
    for hostile in ({1: "a"}, {"model": ["vgg11"]}, "vgg11"):  # a planted checkpoint: one line, no traceback
        torch.save(dict(saved, settings=hostile), os.path.join(checkpoints, "checkpoint.pt"))
        assert cli.main(args + ["--epochs", "2", "--resume"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "settings saved in" in err and "are malformed" in err, err
    torch.save(saved, os.path.join(checkpoints, "checkpoint.pt"))
    assert cli.main(args + ["--epochs", "2", "--resume"]) == 0  # the same settings resume


def test_resume_keeps_the_checkpoints_run_id_and_refuses_another(cifar_dir, tmp_path, capsys):
    """A resume continues one run: under another --run-id its epochs would be published under two identities."""
    checkpoints = str(tmp_path / "ckpt")
    args = small_run_args(cifar_dir, str(tmp_path)) + ["--checkpoint-dir", checkpoints]
    assert cli.main(args + ["--epochs", "1", "--run-id", "first"]) == 0
    capsys.readouterr()
    assert cli.main(args + ["--epochs", "2", "--resume", "--run-id", "other"]) == 2
    err = capsys.readouterr().err
    assert err == ("edgescope-train: --resume: {} holds run first, not --run-id other; drop --run-id (or give "
                   "first) to continue it, or point --checkpoint-dir elsewhere for a new run\n".format(checkpoints))
    assert [r["epoch"] for r in results(str(tmp_path / "results.jsonl"))] == [0]  # nothing published as "other"
    assert cli.main(args + ["--epochs", "2", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "edgescope-train: resuming run first (the checkpoint's run id) from {} after epoch 0".format(
        checkpoints) in out and "run first |" in out
    assert cli.main(args + ["--epochs", "3", "--resume", "--run-id", "first"]) == 0  # the same id: no conflict
    assert [(r["run_id"], r["epoch"]) for r in results(str(tmp_path / "results.jsonl"))] == [
        ("first", 0), ("first", 1), ("first", 2)]


def test_sigterm_then_resume_publishes_every_epoch_again(cifar_dir, tmp_path, launch):
    """A run stopped by SIGTERM and resumed in a new process serves epochs 0..N-1, the restored ones included,
    so a Prometheus that missed them before the stop still gets them."""
    checkpoints = str(tmp_path / "ckpt")
    epochs = 8
    args = small_run_args(cifar_dir, str(tmp_path)) + ["--checkpoint-dir", checkpoints, "--epochs", str(epochs),
                                                       "--run-id", "r1", "--log-interval", "1"]
    args[args.index("--max-batches") + 1] = "10"
    first = launch(args + ["--batch-size", "2"])
    Lines(first.stdout).wait_for(r"^epoch 1 step 3/")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 128 + signal.SIGTERM
    # The stop lands some batches after that line (~30 ms each here: sent 0.5 s late, as a busy machine may, it
    # found the run in epoch 3), so the checkpoint is of the last epoch completed before it, whichever that was.
    completed = [r["epoch"] for r in results(str(tmp_path / "results.jsonl")) if r["complete"]]
    restored = torch.load(os.path.join(checkpoints, "checkpoint.pt"))["epoch"]
    assert completed and restored == max(completed) < epochs - 1

    args[args.index("--metrics-port") + 1] = "0"
    second = launch(args + ["--batch-size", "2", "--resume", "--metrics-addr", "127.0.0.1", "--linger", "120"])
    lines = Lines(second.stdout)
    port = int(re.search(r"http://127\.0\.0\.1:(\d+)/metrics", lines.wait_for("metrics")).group(1))
    early = samples(urllib.request.urlopen("http://127.0.0.1:{}/metrics".format(port), timeout=10).read().decode())
    assert {dict(k)["epoch"] for (name, k) in early if name == "edgescope_train_epoch_duration_seconds"} >= {
        str(epoch) for epoch in range(restored + 1)}
    lines.wait_for("serving the final metrics")
    live = samples(urllib.request.urlopen("http://127.0.0.1:{}/metrics".format(port), timeout=10).read().decode())
    records = {r["epoch"]: r for r in results(str(tmp_path / "results.jsonl")) if r["complete"]}
    assert sorted(records) == list(range(epochs))
    for epoch, record in records.items():
        labels = (("epoch", str(epoch)), ("run_id", "r1"))
        assert live[("edgescope_train_epoch_duration_seconds", labels)] == pytest.approx(record["duration_s"])
        assert live[("edgescope_train_epoch_start_timestamp_seconds", labels)] == pytest.approx(record["start_time"])
        assert live[("edgescope_train_epoch_compute_seconds", labels)] == pytest.approx(record["compute_s"])
        assert live[("edgescope_train_epoch_preprocess_seconds", labels)] == pytest.approx(record["preprocess_s"])
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 128 + signal.SIGTERM


def test_loss_is_read_from_the_device_only_when_printed(cifar_dir, tmp_path, monkeypatch, capsys):
    reads = []
    original = torch.Tensor.item

    def item(tensor: torch.Tensor) -> float:
        if sys._getframe(1).f_globals.get("__name__") == "trainer.cli":  # not the transforms' own
            reads.append(1)
        return original(tensor)

    monkeypatch.setattr(torch.Tensor, "item", item)
    args = small_run_args(cifar_dir, str(tmp_path))
    args[args.index("--max-batches") + 1] = "10"
    assert cli.main(args + ["--epochs", "1", "--batch-size", "4", "--log-interval", "5"]) == 0
    assert capsys.readouterr().out.count(" loss ") >= 2
    assert len(reads) <= 10 // 5 + 2  # per print, plus the epoch's mean and last window: never per batch


def test_timing_none_measures_no_stall(cifar_dir, tmp_path, capsys):
    assert cli.main(small_run_args(cifar_dir, str(tmp_path)) + ["--timing", "none", "--epochs", "1",
                                                                "--verbose"]) == 0
    record = results(str(tmp_path / "results.jsonl"))[0]
    assert record["fetch_stall_s"] is None and record["duration_s"] > 0
    assert [record[key] for key in LOAD_KEYS] == [None] * 4
    out = capsys.readouterr().out
    assert ", stall -, compute -, " in out and "; stall split: storage -, preprocess -; " in out
    exposition = (tmp_path / "run.prom").read_text()
    for name in ("epoch_fetch_stall", "epoch_fetch_stall_storage", "epoch_read", "epoch_preprocess"):
        assert "edgescope_train_{}_seconds{{".format(name) not in exposition
    assert "edgescope_train_fetch_stall_storage_seconds_count{" not in exposition


def test_trains_on_an_image_folder(tmp_path, capsys):
    folder = str(tmp_path / "jpegs")
    write_jpeg_folder(folder, images=12, image_size=40, classes=3, seed=2)
    args = small_run_args(folder, str(tmp_path)) + ["--dataset", "imagefolder", "--image-size", "32",
                                                    "--epochs", "1", "--batch-size", "4", "--verbose"]
    assert cli.main(args) == 0
    record = results(str(tmp_path / "results.jsonl"))[0]
    assert (record["dataset"], record["batches"], record["samples"]) == ("imagefolder", 3, 12)
    assert record["read_s"] > 0 and record["preprocess_s"] > 0
    assert record["fetch_stall_storage_s"] + record["fetch_stall_preprocess_s"] == pytest.approx(
        record["fetch_stall_s"])
    info = [dict(labels) for (name, labels) in samples((tmp_path / "run.prom").read_text())
            if name == "edgescope_train_run_info"]
    assert info[0]["image_size"] == "32"  # a crop size of its own: another configuration in every comparison
    out = capsys.readouterr().out
    assert "imagefolder (12 images, 3 batches/epoch)" in out
    assert re.search(r"stall [\d.]+ s \(\d+% storage\).*; stall split: storage [\d.]+ s, preprocess [\d.]+ s; ", out), out


@pytest.mark.parametrize("extra, expected", [
    (["--linger", "inf"], "argument --linger: inf must be a finite number"),
    (["--lr", "inf"], "argument --lr"),
    (["--run-id", "run-\udcff"], "argument --run-id: 'run-\\udcff' is not valid UTF-8"),
    (["--device-name", "\udce9"], "argument --device-name"),
    (["--run-id", "run\n2"], "argument --run-id: 'run\\n2' holds a control character"),
    (["--run-id", ""], "argument --run-id: '' is empty; give a name, or drop the flag"),
    (["--run-id", "  "], "argument --run-id: '  ' is empty"),
    (["--label", "site=\udce9"], "argument --label"),
    (["--label", "input=synthetic"], "argument --label: 'input=synthetic' must be KEY=VALUE with KEY"),
    (["--synthetic-input", "--evict-dataset"], "--synthetic-input reads no dataset: drop --evict-dataset"),
    (["--web.config.file", "/nonexistent/web.yml", "--data-dir", "/nonexistent/data"],
     "--web.config.file /nonexistent/web.yml"),  # checked before the data
    (["--web.config.file", os.path.join(REPO, "deploy", "web.yml.example")],
     "key 'basic_auth_users.prometheus': must be a bcrypt hash"),  # the example's placeholder
    (["--checkpoint-dir", "/proc/edgescope/ckpt"], "cannot create --checkpoint-dir /proc/edgescope/ckpt"),
])
def test_more_bad_input_is_one_line(cifar_dir, tmp_path, capsys, extra, expected):
    args = small_run_args(cifar_dir, str(tmp_path))
    args[args.index("--metrics-port") + 1] = "0"
    assert cli.main(args + ["--metrics-addr", "127.0.0.1"] + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgescope-train: ") and err.count("\n") == 1 and expected in err, err


def test_a_non_utf8_run_id_from_a_real_command_line_is_one_line(cifar_dir, tmp_path):
    args = [os.fsencode(a) for a in small_run_args(cifar_dir, str(tmp_path))]
    done = subprocess.run([os.fsencode(sys.executable), b"-m", b"trainer.cli"] + args + [b"--run-id", b"r\xff"],
                          cwd=REPO, env=cli_env(), capture_output=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count(b"\n") == 1 and b"not valid UTF-8" in done.stderr, done.stderr


def test_a_checkpoint_dir_that_is_a_file_fails_at_once(cifar_dir, tmp_path, capsys):
    (tmp_path / "ckpt").write_text("")
    args = small_run_args(cifar_dir, str(tmp_path)) + ["--checkpoint-dir", str(tmp_path / "ckpt")]
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    assert "--checkpoint-dir {} is a file".format(tmp_path / "ckpt") in captured.err
    assert captured.err.count("\n") == 1 and "epoch" not in captured.out  # before any training


class PlantedCheckpoint:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("write, expected", [
    (lambda path, marker: open(path, "wb").write(os.urandom(3000)),
     "is not a checkpoint (not the zip archive torch.save writes)"),
    (lambda path, marker: torch.save({"epoch": 0, "model": {}}, path), "lacks run_id, history, optimizer (or has the wrong type)"),
    (lambda path, marker: torch.save([1, 2], path), "lacks epoch, run_id"),
    (lambda path, marker: torch.save({"epoch": "0", "run_id": "r", "history": {}, "model": {}, "optimizer": {}},
                                     path), "lacks epoch, history (or has the wrong type)"),
    (lambda path, marker: torch.save({"epoch": 0, "run_id": PlantedCheckpoint(marker)}, path),
     "is not a readable checkpoint (UnpicklingError"),
])
def test_a_bad_checkpoint_is_one_line_and_runs_no_code(cifar_dir, tmp_path, capsys, write, expected):
    checkpoints = tmp_path / "ckpt"
    checkpoints.mkdir()
    marker = tmp_path / "marker"
    write(str(checkpoints / "checkpoint.pt"), str(marker))
    assert not marker.exists()
    args = small_run_args(cifar_dir, str(tmp_path)) + ["--checkpoint-dir", str(checkpoints), "--resume"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and str(checkpoints / "checkpoint.pt") in err, err
    assert "weights_only" not in err  # torch's advice to load it unsafely is never repeated
    assert not marker.exists()


def test_a_refused_checkpoint_shows_our_line_without_torchs_warning(cifar_dir, tmp_path):
    """A plain pickle: torch warns about its protocol (two lines) before refusing it. A real process, as pytest
    would catch the warning itself."""
    checkpoints = tmp_path / "ckpt"
    checkpoints.mkdir()
    with open(str(checkpoints / "checkpoint.pt"), "wb") as f:
        pickle.dump({"epoch": 0}, f, protocol=4)
    args = small_run_args(cifar_dir, str(tmp_path)) + ["--checkpoint-dir", str(checkpoints), "--resume"]
    done = subprocess.run([sys.executable, "-m", "trainer.cli"] + args, cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("edgescope-train: {} is not a checkpoint (not the zip archive".format(
        checkpoints / "checkpoint.pt")), done.stderr


def test_a_checkpoint_of_another_model_is_one_line(cifar_dir, tmp_path, capsys):
    args = small_run_args(cifar_dir, str(tmp_path)) + ["--checkpoint-dir", str(tmp_path / "ckpt"), "--epochs", "1"]
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(args + ["--resume", "--epochs", "2", "--model", "resnet18"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "with model=mobilenet_v3_small, this run has model=resnet18" in err, err
    path = str(tmp_path / "ckpt" / "checkpoint.pt")  # as an older edgescope wrote it: no settings to compare
    torch.save({k: v for k, v in torch.load(path).items() if k != "settings"}, path)
    assert cli.main(args + ["--resume", "--epochs", "2", "--model", "resnet18"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not fit this run" in err and "same --model" in err, err


def test_the_endpoint_has_auth_404_405_and_no_python_version(cifar_dir, tmp_path, launch):
    import bcrypt
    import requests
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  prometheus: '{}'\n".format(
        bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()))
    args = small_run_args(cifar_dir, str(tmp_path))
    args[args.index("--metrics-port") + 1] = "0"
    process = launch(args + ["--metrics-addr", "127.0.0.1", "--linger", "120", "--web.config.file", str(web)])
    lines = Lines(process.stdout)
    port = int(re.search(r"http://127\.0\.0\.1:(\d+)/metrics", lines.wait_for("metrics")).group(1))
    url = "http://127.0.0.1:{}".format(port)
    anonymous = requests.get(url + "/metrics", timeout=10)
    assert anonymous.status_code == 401 and "Python" not in anonymous.headers["Server"]
    ok = requests.get(url + "/metrics", auth=("prometheus", "s3cret"), timeout=10)
    assert ok.status_code == 200 and "edgescope_train_running" in ok.text
    assert requests.get(url + "/other", auth=("prometheus", "s3cret"), timeout=10).status_code == 404
    assert requests.options(url + "/metrics", auth=("prometheus", "s3cret"), timeout=10).status_code == 405
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) in (0, 128 + signal.SIGTERM)


def test_without_weights_only_checkpoints_go_through_the_restricted_unpickler(cifar_dir, tmp_path, capsys,
                                                                             monkeypatch):
    """An older torch (JetPack 5) has no weights_only: resuming still works and still runs no code."""
    checkpoints = tmp_path / "ckpt"
    args = small_run_args(cifar_dir, str(tmp_path)) + ["--checkpoint-dir", str(checkpoints)]
    assert cli.main(args + ["--epochs", "1"]) == 0
    monkeypatch.setattr(safe_load, "TORCH_HAS_WEIGHTS_ONLY", False)
    capsys.readouterr()
    assert cli.main(args + ["--epochs", "2", "--resume"]) == 0
    captured = capsys.readouterr()
    assert "epoch 1/2" in captured.out and "has no weights_only" in captured.err
    marker = tmp_path / "marker"
    torch.save({"epoch": 0, "run_id": PlantedCheckpoint(str(marker))}, str(checkpoints / "checkpoint.pt"))
    assert cli.main(args + ["--epochs", "2", "--resume"]) == 2
    assert "refused to load io.open (not part of a checkpoint)" in capsys.readouterr().err
    assert not marker.exists()


def test_synthetic_input_trains_the_loaders_batches_with_no_loader_and_says_so(cifar_dir, tmp_path):
    """DS-Analyzer's synthetic pass: the same batches per epoch, no fetch work (no read or preprocessing time,
    no stall beyond a few ms), and run_info input="synthetic" so no report mixes it with the dataset's runs."""
    args = small_run_args(cifar_dir, str(tmp_path)) + ["--run-id", "syn", "--synthetic-input"]
    assert cli.main(args) == 0
    records = results(str(tmp_path / "results.jsonl"))
    assert [(r["epoch"], r["batches"], r["samples"]) for r in records] == [(0, 4, 32), (1, 4, 32)]
    for r in records:
        assert r["read_s"] is None and r["preprocess_s"] is None and r["fetch_stall_storage_s"] is None
        assert r["fetch_stall_s"] < 0.05 * r["compute_s"]
    info = [s for (name, labels), s in samples((tmp_path / "run.prom").read_text()).items()
            if name == "edgescope_train_run_info" and ("input", "synthetic") in labels]
    assert info == [1.0]


def test_more_workers_than_cores_is_one_line_of_ours_instead_of_torchs_warning(cifar_dir, tmp_path):
    """On one core (the child's affinity), 2 workers: torch would warn at every epoch's start (two long lines
    each); the trainer says once what it means for the measurement. Its epoch lines fit 120 columns."""
    one_core = {min(os.sched_getaffinity(0))}
    args = small_run_args(cifar_dir, str(tmp_path)) + ["--workers", "2", "--max-batches", "2"]
    done = subprocess.run([sys.executable, "-m", "trainer.cli"] + args, cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: os.sched_setaffinity(0, one_core))
    assert done.returncode == 0, done.stderr
    assert "This DataLoader will create" not in done.stderr
    assert done.stderr.splitlines() == [
        "edgescope-train: note: 2 loader workers and the training steps share the 1 CPU core this process may use: "
        "stall and compute include waiting for a core (this machine's figures with 2 workers)"]
    epoch_lines = [line for line in done.stdout.splitlines() if re.match(r"^epoch \d+/2: E2E ", line)]
    assert len(epoch_lines) == 2 and max(len(line) for line in epoch_lines) <= 120, done.stdout


def test_workers_within_the_cores_need_no_note(monkeypatch):
    monkeypatch.setattr(cli, "usable_cores", lambda: 2)
    assert cli.workers_note(2) is None and cli.workers_note(0) is None
    assert cli.workers_note(3).startswith(
        "edgescope-train: note: 3 loader workers and the training steps share the 2 CPU cores")
