"""The CIFAR-10 reader against torchvision's own, synthetic datasets, models."""
import hashlib
import os
import pickle

import pytest
import torch
import torchvision.datasets.cifar as tv_cifar
from torchvision.datasets import ImageFolder

from trainer import datasets_cli
from trainer.data import CIFAR10Files, build_dataset, cifar10_train_transform
from trainer.errors import UsageError
from trainer.models import MODELS, build_model
from trainer.synthetic import write_cifar10, write_jpeg_folder


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
