"""The CIFAR-10 reader against torchvision's own, synthetic datasets, models."""
import glob
import hashlib
import os
import pickle
import shutil
import time

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar as tv_cifar
from torchvision.datasets import ImageFolder

from trainer import cli, data, datasets_cli, safe_load
from trainer.data import CIFAR10Files, SyntheticBatches, build_dataset, cifar10_train_transform, make_loader
from trainer.errors import UsageError
from trainer.meter import LoadTimes, StepMeter
from trainer.models import MODELS, build_model
from trainer.synthetic import write_cifar10, write_jpeg_folder

from .conftest import small_run_args


def tree_digest(root: str) -> str:
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


@pytest.mark.parametrize("train", [True, False])
def test_reader_decodes_exactly_as_torchvision(cifar_dir, monkeypatch, train):
    # torchvision refuses non-official files by md5; bypass only that check to compare decoding.
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    transform = cifar10_train_transform()
    ours = CIFAR10Files(cifar_dir, train=train, transform=transform)
    theirs = tv_cifar.CIFAR10(cifar_dir, train=train, transform=transform)
    assert len(ours) == len(theirs) == (160 if train else 20)
    assert ours.data.shape == theirs.data.shape and (ours.data == theirs.data).all()
    assert ours.targets == theirs.targets
    assert ours.classes == theirs.classes and ours.class_to_idx == theirs.class_to_idx
    for index in (0, 7, len(ours) - 1):  # same random augmentation under the same seed
        torch.manual_seed(index)
        image, label = ours[index]
        torch.manual_seed(index)
        expected_image, expected_label = theirs[index]
        assert label == expected_label and torch.equal(image, expected_image)
        assert image.shape == (3, 32, 32)


def test_files_claiming_to_be_official_must_match_the_official_md5(tmp_path):
    write_cifar10(str(tmp_path), train_images=10, test_images=2)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    entry = pickle.loads(path.read_bytes(), encoding="latin1")
    entry["batch_label"] = "training batch 1 of 5"
    path.write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(UsageError, match="official CIFAR-10 but its md5 differs"):
        CIFAR10Files(str(tmp_path))


def test_synthetic_cifar10_is_deterministic_by_seed(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert datasets_cli.main(["cifar10", "--out", str(tmp_path / name), "--train-images", "30",
                                  "--test-images", "5", "--seed", str(seed)]) == 0
    assert tree_digest(str(tmp_path / "a")) == tree_digest(str(tmp_path / "b"))
    assert tree_digest(str(tmp_path / "a")) != tree_digest(str(tmp_path / "c"))
    dataset = CIFAR10Files(str(tmp_path / "a"))
    assert len(dataset) == 30 and len(dataset.classes) == 10 and set(dataset.targets) <= set(range(10))


def test_synthetic_jpeg_folder_is_an_image_folder_of_the_chosen_size(tmp_path):
    for name in ("a", "b"):
        assert datasets_cli.main(["imagefolder", "--out", str(tmp_path / name), "--images", "12",
                                  "--image-size", "48", "--classes", "3", "--seed", "5"]) == 0
    assert tree_digest(str(tmp_path / "a")) == tree_digest(str(tmp_path / "b"))
    folder = ImageFolder(str(tmp_path / "a"))
    assert len(folder) == 12 and folder.classes == ["class_00", "class_01", "class_02"]
    assert folder[0][0].size == (48, 48)
    assert build_dataset("imagefolder", str(tmp_path / "a"), image_size=32)[0][0].shape == (3, 32, 32)
    written = write_jpeg_folder(str(tmp_path / "c"), images=4, image_size=64, classes=2, seed=1)
    assert written == sum(p.stat().st_size for p in (tmp_path / "c").rglob("*.jpg"))


def test_a_datasets_identity_names_its_files_not_their_place_nor_their_count(tmp_path, cifar_dir):
    """run_info's dataset_id: two 12-image folders (another seed, another image size) differ though their counts
    are equal; a copy on another disk (here another folder) is the same dataset, as is a copy of CIFAR-10."""
    for name, seed, size in (("a", "5", "48"), ("b", "6", "48"), ("c", "5", "64")):
        assert datasets_cli.main(["imagefolder", "--out", str(tmp_path / name), "--images", "12", "--image-size",
                                  size, "--classes", "3", "--seed", seed]) == 0
    shutil.copytree(str(tmp_path / "a"), str(tmp_path / "elsewhere" / "a"))
    shutil.copytree(cifar_dir, str(tmp_path / "cifar-copy"))

    def identity(name: str, kind: str = "imagefolder") -> str:
        return data.dataset_identity(build_dataset(kind, str(tmp_path / name), image_size=32), str(tmp_path / name))
    ids = {name: identity(name) for name in ("a", "b", "c", "elsewhere/a")}
    assert ids["a"] == ids["elsewhere/a"] and len({ids["a"], ids["b"], ids["c"]}) == 3
    assert len(ids["a"]) == 12 and int(ids["a"], 16) >= 0
    assert identity("cifar-copy", "cifar10") == data.dataset_identity(build_dataset("cifar10", cifar_dir), cifar_dir)
    assert identity("cifar-copy", "cifar10") != ids["a"]


def test_missing_or_wrong_data_is_named(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        build_dataset("cifar10", str(tmp_path / "nowhere"))
    with pytest.raises(UsageError, match="data_batch_1 is missing.*edgescope-dataset cifar10"):
        build_dataset("cifar10", str(tmp_path))
    with pytest.raises(UsageError, match="not an image folder"):
        build_dataset("imagefolder", str(tmp_path))
    with pytest.raises(UsageError, match="unknown dataset 'mnist'"):
        build_dataset("mnist", str(tmp_path))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_classify_cifar_images_into_ten_classes(name):
    model = build_model(name, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_dataset_cli_bad_input_is_one_line(tmp_path, capsys):
    assert datasets_cli.main(["cifar10", "--out", str(tmp_path), "--train-images", "0"]) == 2
    assert datasets_cli.main(["svhn", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("edgescope-dataset: ") for line in err)
    assert "--train-images" in err[0] and "svhn" in err[1]


class Planted:
    """Unpickling this creates ``marker``: what a pickle planted in --data-dir could do (or worse)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _copy(cifar_dir: str, tmp_path) -> str:
    root = str(tmp_path / "data")
    shutil.copytree(cifar_dir, root)
    return root


def _one_line_exit_2(args, capsys) -> str:
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgescope-train: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_a_planted_pickle_runs_no_code(cifar_dir, tmp_path, capsys):
    root = _copy(cifar_dir, tmp_path)
    batch = os.path.join(root, "cifar-10-batches-py", "data_batch_2")
    proof, marker = tmp_path / "proof", tmp_path / "marker"
    pickle.loads(pickle.dumps(Planted(str(proof)), protocol=2))
    assert proof.exists()  # what plain pickle does with it
    with open(batch, "wb") as f:
        pickle.dump({"batch_label": "x", "data": Planted(str(marker)), "labels": []}, f, protocol=2)
    err = _one_line_exit_2(small_run_args(root, str(tmp_path)), capsys)
    assert not marker.exists()
    assert batch in err and "refused to load io.open" in err and "edgescope-dataset cifar10" in err


def _truncate(path: str) -> None:
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])


def _write(entry):
    def write(path: str) -> None:
        with open(path, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    return write


def _random_bytes(path: str) -> None:
    with open(path, "wb") as f:
        f.write(np.random.default_rng(0).bytes(5000))


@pytest.mark.parametrize("damage, expected", [
    (_truncate, "is not a readable CIFAR-10 file (UnpicklingError: pickle data was truncated"),
    (_random_bytes, "is not a readable CIFAR-10 file (UnpicklingError"),
    (_write({"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4}), "is not a CIFAR-10 batch"),
    (_write({"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 10]}), "is not a CIFAR-10 batch"),
    (_write({"data": np.zeros((4, 3072), np.float32), "labels": [0] * 4}), "is not a CIFAR-10 batch"),
    (_write([1, 2, 3]), "is not a CIFAR-10 batch"),
    (_write({"batch_label": "training batch 2 of 5", "data": np.zeros((4, 3072), np.uint8), "labels": [0] * 4}),
     "says it is the official CIFAR-10 but its md5 differs"),
])
def test_a_broken_cifar_file_is_one_line_naming_it(cifar_dir, tmp_path, capsys, damage, expected):
    root = _copy(cifar_dir, tmp_path)
    batch = os.path.join(root, "cifar-10-batches-py", "data_batch_2")
    damage(batch)
    err = _one_line_exit_2(small_run_args(root, str(tmp_path)), capsys)
    assert batch in err and expected in err, err


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_a_cifar_file_or_checkpoint_that_never_ends_is_refused_at_once(tmp_path, kind):
    """The readers themselves refuse what is not a regular file (the callers' isfile checks only narrow the
    window): a FIFO blocked the md5's open and torch.load's zip check for ever, /dev/zero hashed without end."""
    path = str(tmp_path / kind)
    os.mkfifo(path) if kind == "fifo" else os.symlink("/dev/zero", path)
    with pytest.raises(safe_load.DataFileError, match="^cannot read {}: not a regular file; fix$".format(path)):
        safe_load.load_pickle(path, "fix")
    with pytest.raises(safe_load.DataFileError, match="^cannot read checkpoint {}: not a regular file; ".format(path)):
        safe_load.load_checkpoint(path, torch.device("cpu"))


def test_a_cifar_file_past_its_bound_is_one_line(cifar_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(safe_load, "CIFAR_FILE_MAX_BYTES", 64 << 10)  # the fixture's batches are 144 KB
    root = _copy(cifar_dir, tmp_path)
    err = _one_line_exit_2(small_run_args(root, str(tmp_path)), capsys)
    assert "cannot read {}: larger than 64 KiB; delete ".format(
        os.path.join(root, "cifar-10-batches-py", "data_batch_1")) in err, err


@pytest.mark.parametrize("names", ["airplane", ["airplane", "automobile"]])  # the batches' labels reach 9
def test_broken_metadata_is_one_line(cifar_dir, tmp_path, capsys, names):
    root = _copy(cifar_dir, tmp_path)
    meta = os.path.join(root, "cifar-10-batches-py", "batches.meta")
    _write({"label_names": names})(meta)
    err = _one_line_exit_2(small_run_args(root, str(tmp_path)), capsys)
    assert meta in err and "is not CIFAR-10 metadata" in err


def test_numpy_1_pickles_load_as_the_official_files_were_written(cifar_dir, tmp_path):
    """The official files name numpy.core.multiarray (numpy 1); numpy 2 writes numpy._core."""
    root = _copy(cifar_dir, tmp_path)
    folder = os.path.join(root, "cifar-10-batches-py")
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data.replace(b"numpy._core", b"numpy.core"))
    assert np.array_equal(CIFAR10Files(root).data, CIFAR10Files(cifar_dir).data)


def _broken_image_folder(tmp_path, kind: str) -> str:
    folder = str(tmp_path / "jpegs")
    write_jpeg_folder(folder, images=12, image_size=40, classes=3, seed=2)
    victim = sorted(glob.glob(os.path.join(folder, "class_01", "*.jpg")))[0]
    if kind == "truncated":
        _truncate(victim)
    else:
        with open(victim, "w") as f:
            f.write("not a JPEG at all\n")
    return victim


@pytest.mark.parametrize("kind", ["truncated", "not-an-image"])
@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_corrupt_image_is_one_line_naming_it_and_the_run_is_marked_ended(tmp_path, capsys, kind, workers):
    victim = _broken_image_folder(tmp_path, kind)
    args = small_run_args(str(tmp_path / "jpegs"), str(tmp_path))
    args[args.index("--workers") + 1] = workers
    err = _one_line_exit_2(args + ["--dataset", "imagefolder", "--image-size", "32", "--batch-size", "4",
                                   "--run-id", "broken"], capsys)
    assert victim in err and "is not a readable image" in err and "remove or replace it" in err, err
    assert 'edgescope_train_running{run_id="broken"} 0.0' in (tmp_path / "run.prom").read_text()


def test_symlinks_out_of_the_data_dir_are_skipped_with_a_note(tmp_path, capsys):
    folder = str(tmp_path / "jpegs")
    write_jpeg_folder(folder, images=6, image_size=40, classes=2, seed=2)
    write_jpeg_folder(str(tmp_path / "outside"), images=4, image_size=40, classes=2, seed=3)
    outside = sorted(glob.glob(str(tmp_path / "outside" / "class_00" / "*.jpg")))
    os.symlink(outside[0], os.path.join(folder, "class_00", "leak.jpg"))
    os.symlink(str(tmp_path / "outside" / "class_01"), os.path.join(folder, "class_01", "linked_dir"))
    os.symlink(os.path.join(folder, "class_00", sorted(os.listdir(os.path.join(folder, "class_00")))[0]),
               os.path.join(folder, "class_01", "inside.jpg"))  # a link that stays inside is fine
    dataset = build_dataset("imagefolder", folder, image_size=32)
    assert len(dataset) == 6 + 1
    assert all(os.path.realpath(path).startswith(folder) for path, _ in dataset.samples)
    err = capsys.readouterr().err
    assert "skipped 2 file(s) or folder(s) whose real path is outside --data-dir" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("workers", [0, 2])
def test_a_timed_loader_sends_each_batchs_read_and_preprocess_seconds(tmp_path, monkeypatch, workers):
    """An injected slow reader (50 ms per file) shows up as read time, in the workers as without them."""
    folder = str(tmp_path / "jpegs")
    write_jpeg_folder(folder, images=8, image_size=48, classes=2, seed=3)

    def slow_read(path: str) -> bytes:
        time.sleep(0.05)
        return safe_load.read_bytes(path)

    monkeypatch.setattr(data, "read_bytes", slow_read)  # the workers are forked: they inherit it
    dataset = build_dataset("imagefolder", folder, image_size=32)
    batches = list(make_loader(dataset, 4, workers, 2, False, seed=0, timed=True))
    assert len(batches) == 2
    for images, targets, times in batches:
        assert images.shape == (4, 3, 32, 32) and targets.shape == (4,)
        assert isinstance(times, LoadTimes)
        assert 4 * 0.05 <= times.read_s < 4 * 0.05 + 2.0  # generous: a shared machine
        assert times.preprocess_s > 0
    images, targets = next(iter(make_loader(dataset, 4, workers, 2, False, seed=0)))  # untimed: as before
    assert images.shape == (4, 3, 32, 32)

    meter = StepMeter("cpu")  # slow reads, no compute to hide them: the stall is mostly storage
    meter.begin_window("epoch")
    for images, targets in meter.wrap(make_loader(dataset, 4, workers, 2, False, seed=0, timed=True)):
        with meter.step():
            pass
    window = meter.end_window("epoch")
    assert window.read_s >= 8 * 0.05
    assert window.fetch_stall_storage_s > window.fetch_stall_preprocess_s
    assert window.fetch_stall_storage_s + window.fetch_stall_preprocess_s == pytest.approx(window.fetch_stall_s)


def test_cifar_samples_are_all_preprocessing_its_files_are_read_at_start(cifar_dir):
    loader = make_loader(build_dataset("cifar10", cifar_dir), 8, 0, 2, False, seed=0, timed=True)
    _, _, times = next(iter(loader))
    assert times.read_s == 0.0 and times.preprocess_s > 0


def test_synthetic_batches_have_the_loaders_count_and_sizes_and_read_one_sample(tmp_path, monkeypatch):
    folder = str(tmp_path / "jpegs")
    write_jpeg_folder(folder, images=10, image_size=48, classes=3, seed=3)
    reads = []
    monkeypatch.setattr(data, "read_bytes", lambda path: reads.append(path) or safe_load.read_bytes(path))
    dataset = build_dataset("imagefolder", folder, image_size=32)
    synthetic = SyntheticBatches(dataset, 4, torch.device("cpu"), seed=0)
    real = make_loader(dataset, 4, 0, 2, False, seed=0)
    assert len(reads) == 1  # the sample shape, at start-up
    assert len(synthetic) == len(real) == 3
    for _ in range(2):  # every epoch: the loader's sizes, the same tensors, no file read
        batches = list(synthetic)
        assert [(tuple(i.shape), tuple(t.shape)) for i, t in batches] == \
            [((4, 3, 32, 32), (4,)), ((4, 3, 32, 32), (4,)), ((2, 3, 32, 32), (2,))]
        assert all(0 <= int(t.min()) and int(t.max()) < 3 for _, t in batches)
        assert batches[0][0].data_ptr() == batches[1][0].data_ptr()
    assert len(reads) == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_the_runs_own_storage_reads_are_counted_by_the_processes_that_made_the_batches(tmp_path, workers):
    """/proc/<pid>/io of the batch makers: a cold epoch reads at least the dataset's bytes from storage, a
    cached one next to nothing, while the bytes its reads returned stay those of the files."""
    from trainer.pagecache import evict, warm
    folder = str(tmp_path / "images")
    size = write_jpeg_folder(folder, 48, 64)
    loader = make_loader(build_dataset("imagefolder", folder, image_size=32), 8, workers, 2, False, 0, timed=True)
    meter = StepMeter("cpu", "lazy")

    def epoch():
        meter.begin_window("epoch")
        for _ in meter.wrap(loader):
            with meter.step():
                pass
        return meter.end_window("epoch")

    evict(folder)
    cold = epoch()
    warm(folder)
    cached = epoch()
    if cold.io_read_bytes is None:
        pytest.skip("this kernel keeps no per-process I/O accounting (/proc/self/io)")
    assert cold.io_read_bytes >= size  # every file from storage (whole pages, read-ahead: at least its bytes)
    assert cached.io_read_bytes < 0.1 * size
    assert cold.io_rchar_bytes >= size and cached.io_rchar_bytes >= size  # the reads returned every file's bytes
    assert cold.io_read_syscalls >= 48
