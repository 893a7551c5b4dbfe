"""Deterministic synthetic datasets for machines without internet.

Images are learnable (each class has its own colour pattern, plus noise) so a
short training run shows a falling loss, and are a pure function of the seed.
"""
import io
import os
import pickle
from typing import Any, Callable, List, Optional

import numpy as np
from PIL import Image

from trainer.data import BASE_FOLDER, META_FILE

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _images(rng: np.random.RandomState, labels: np.ndarray, size: int, classes: int) -> np.ndarray:
    """uint8 HWC images: a per-class smooth colour gradient plus uniform noise."""
    class_rng = np.random.RandomState(classes)  # the same class patterns whatever the seed
    corners = class_rng.uniform(30, 225, size=(classes, 2, 2, 3))
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]
    out = np.empty((len(labels), size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        top = corners[label, 0, 0] * (1 - ramp) + corners[label, 0, 1] * ramp  # (size, 1, 3)
        bottom = corners[label, 1, 0] * (1 - ramp) + corners[label, 1, 1] * ramp
        base = top.transpose(1, 0, 2) * (1 - ramp) + bottom.transpose(1, 0, 2) * ramp  # (size, size, 3)
        noise = rng.uniform(-40, 40, size=(size, size, 3))
        out[i] = np.clip(base + noise, 0, 255).astype(np.uint8)
    return out


def _write_batch(path: str, label: str, images: np.ndarray, labels: np.ndarray, first_index: int) -> None:
    """One batch file as in cifar-10-python.tar.gz: N x 3072 uint8 rows, R then G then B planes."""
    entry = {
        "batch_label": label,  # not the official label, so readers skip the official md5 check
        "labels": [int(x) for x in labels],
        "data": np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), 3072),
        "filenames": ["synthetic_{:06d}.png".format(first_index + i) for i in range(len(images))],
    }
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)


def write_cifar10(out: str, train_images: int, test_images: int, seed: int = 0,
                  on_images: Optional[Callable[[int], Any]] = None) -> str:
    """Writes ``out/cifar-10-batches-py/`` (data_batch_1..5, test_batch, batches.meta); returns that folder.
    ``on_images(n)`` is told of each n images written (progress)."""
    on_images = on_images or (lambda n: None)
    folder = os.path.join(out, BASE_FOLDER)
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(seed)
    train_labels = rng.randint(0, 10, size=train_images)
    test_labels = rng.randint(0, 10, size=test_images)
    bounds = np.linspace(0, train_images, 6).astype(int)
    for i in range(5):
        labels = train_labels[bounds[i]:bounds[i + 1]]
        _write_batch(os.path.join(folder, "data_batch_{}".format(i + 1)),
                     "edgescope synthetic training batch {} of 5 (seed {})".format(i + 1, seed),
                     _images(rng, labels, 32, 10), labels, int(bounds[i]))
        on_images(len(labels))
    _write_batch(os.path.join(folder, "test_batch"), "edgescope synthetic testing batch 1 of 1 (seed {})".format(seed),
                 _images(rng, test_labels, 32, 10), test_labels, train_images)
    on_images(test_images)
    with open(os.path.join(folder, META_FILE), "wb") as f:
        pickle.dump({"num_cases_per_batch": int(bounds[1]), "label_names": CIFAR10_CLASSES, "num_vis": 3072},
                    f, protocol=2)
    return folder


def write_jpeg_folder(out: str, images: int, image_size: int, classes: int = 10, seed: int = 0,
                      quality: int = 90, on_images: Optional[Callable[[int], Any]] = None) -> int:
    """Writes ``out/class_NN/img_NNNNNNN.jpg`` (torchvision ImageFolder layout); returns the bytes written.
    ``on_images(n)`` is told of each n images written (progress)."""
    on_images = on_images or (lambda n: None)
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, classes, size=images)
    names = ["class_{:02d}".format(c) for c in range(classes)]  # type: List[str]
    for name in names:
        os.makedirs(os.path.join(out, name), exist_ok=True)
    total = 0
    for i, label in enumerate(labels):
        buffer = io.BytesIO()
        Image.fromarray(_images(rng, labels[i:i + 1], image_size, classes)[0]).save(buffer, "JPEG", quality=quality)
        with open(os.path.join(out, names[label], "img_{:07d}.jpg".format(i)), "wb") as f:
            f.write(buffer.getvalue())
        total += buffer.tell()
        on_images(1)
    return total
