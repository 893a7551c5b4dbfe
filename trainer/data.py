"""Datasets and loaders of the reference experiment.

torchvision's ``CIFAR10`` refuses any files whose md5 is not the official
one, so synthetic CIFAR-10 files (``edgescope-dataset cifar10``) could not be
read by it. ``CIFAR10Files`` reads the same python file format with the same
decoding, and checks the official checksums only when the files say they are
the official dataset (their ``batch_label``). Every file goes through
trainer.safe_load: a restricted unpickler, so a planted pickle runs no code.

``make_loader(timed=True)`` appends each batch's ``LoadTimes`` (read vs
decode/augment/collate seconds, measured in the process that made it) for
``StepMeter`` to split the fetch stall into storage and preprocessing.
``SyntheticBatches`` is DS-Analyzer's synthetic pass: no loader at all.
"""
import hashlib
import os
import random
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple, Type

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, get_worker_info
from torch.utils.data.dataloader import default_collate
from torchvision import transforms
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from exporter.pagecache import ScanLimits, ScanTooBig, regular_files
from trainer import afterwait
from trainer.afterwait import AfterWait
from trainer.errors import UsageError
from trainer.machine import private_bytes, thread_schedule
from trainer.meter import LoadTimes
from trainer.safe_load import DataFileError, load_image, load_pickle, read_bytes

DATASETS = ("cifar10", "imagefolder")
BASE_FOLDER = "cifar-10-batches-py"
META_FILE = "batches.meta"
# (file, official md5, official batch_label) as published with cifar-10-python.tar.gz
OFFICIAL_TRAIN = [("data_batch_{}".format(i), md5, "training batch {} of 5".format(i)) for i, md5 in enumerate((
    "c99cafc152244af753f735de768cd75f", "d4bba439e000b95fd0a9bffe97cbabec", "54ebc095f3ab1f0389bbae665268c751",
    "634d18415352ddfa80567beed471001a", "482c414d41f54cd18b22e5b47cb7c3cb"), start=1)]
OFFICIAL_TEST = [("test_batch", "40351d587109b95175f43aff81a1287e", "testing batch 1 of 1")]
OFFICIAL_META_MD5 = "5ff9c542aee3614f3951f8cda6e48888"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def cifar10_train_transform() -> Callable[[Image.Image], torch.Tensor]:
    """The reference augmentation: RandomCrop(32, pad 4), flip, ToTensor, ImageNet normalisation."""
    return transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def imagefolder_train_transform(image_size: int) -> Callable[[Image.Image], torch.Tensor]:
    """The usual ImageNet training recipe (pytorch/examples) at ``image_size``."""
    return transforms.Compose([
        transforms.RandomResizedCrop(image_size),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def _load_batch(path: str, official_md5: str, official_label: str, fix: str) -> Dict[str, Any]:
    """One data batch, checked: the official md5 before unpickling, then the format (a dict of uint8
    ``data`` N x 3072 and N ``labels`` 0..9). Files claiming to be official must be."""
    entry, md5 = load_pickle(path, fix)
    official = md5 == official_md5
    if not official and isinstance(entry, dict) and entry.get("batch_label") == official_label:
        raise UsageError("{} says it is the official CIFAR-10 but its md5 differs: the file is "
                         "corrupt; {}".format(path, fix))
    data = entry.get("data") if isinstance(entry, dict) else None
    labels = (entry.get("labels", entry.get("fine_labels")) or []) if isinstance(entry, dict) else []
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072
            and isinstance(labels, list) and len(labels) == len(data)
            and all(isinstance(label, int) and 0 <= label < 10 for label in labels)):
        raise DataFileError("{} is not a CIFAR-10 batch (a dict of uint8 'data' N x 3072 and N 'labels' 0..9); {}"
                            .format(path, fix))
    return entry


def _load_label_names(path: str, fix: str, labels: int, claims_official: bool) -> List[str]:
    """The class names, one at least for each of the ``labels`` the batches use (fewer: the model would get
    fewer outputs than targets, a traceback in the loss); the official file where the batches claim to be."""
    names, md5 = load_pickle(path, fix)
    if claims_official and md5 != OFFICIAL_META_MD5:
        raise UsageError("{} is not the official CIFAR-10 metadata (md5 differs); delete {} and download "
                         "it again".format(path, os.path.dirname(path)))
    names = names.get("label_names") if isinstance(names, dict) else None
    if not (isinstance(names, list) and len(names) >= max(labels, 1) and all(isinstance(n, str) for n in names)):
        raise DataFileError("{} is not CIFAR-10 metadata (a dict with a list of str 'label_names', one for each of "
                            "the {} labels); {}".format(path, labels, fix))
    return names


class CIFAR10Files(Dataset):
    """CIFAR-10 in its python format under ``root/cifar-10-batches-py``; items
    are ``(transform(PIL image), target_transform(label))`` exactly as torchvision's."""

    def __init__(self, root: str, train: bool = True, transform: Optional[Callable[..., Any]] = None,
                 target_transform: Optional[Callable[..., Any]] = None) -> None:
        self.root = root
        self.transform = transform
        self.target_transform = target_transform
        folder = os.path.join(root, BASE_FOLDER)
        files = OFFICIAL_TRAIN if train else OFFICIAL_TEST
        self.files = [os.path.join(folder, name) for name, _, _ in files + [(META_FILE, None, None)]]  # it reads
        for path in self.files:
            if not os.path.isfile(path):
                raise UsageError("no CIFAR-10 at {}: {} is missing; make a synthetic one with "
                                 "`edgescope-dataset cifar10 --out {}` or pass --download"
                                 .format(folder, os.path.basename(path), root))
        fix = ("delete {} and download it again (--download) or make a synthetic one with "
               "`edgescope-dataset cifar10 --out {}`".format(folder, root))
        arrays = []  # type: List[np.ndarray]
        self.targets = []  # type: List[int]
        claims_official = False
        for name, md5, official_label in files:
            entry = _load_batch(os.path.join(folder, name), md5, official_label, fix)
            claims_official = claims_official or entry.get("batch_label") == official_label
            arrays.append(entry["data"])
            self.targets.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
        self.classes = _load_label_names(os.path.join(folder, META_FILE), fix, max(self.targets, default=-1) + 1,
                                         claims_official)
        self.data = np.vstack(arrays).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))  # HWC, as torchvision
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    def __getitem__(self, index: int) -> Tuple[Any, Any]:
        image = Image.fromarray(self.data[index])
        target = self.targets[index]  # type: Any
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def __len__(self) -> int:
        return len(self.data)


def download_cifar10(root: str) -> None:
    """The official archive via torchvision (checks its md5); only with --download."""
    from torchvision.datasets import CIFAR10
    CIFAR10(root, train=True, download=True)


def build_dataset(name: str, data_dir: str, download: bool = False, image_size: int = 224) -> Any:
    """The training set ``name`` under ``data_dir`` with the reference transforms."""
    if name not in DATASETS:
        raise UsageError("unknown dataset {!r}; --dataset takes one of: {}".format(name, ", ".join(DATASETS)))
    if download and name == "cifar10":
        os.makedirs(data_dir, exist_ok=True)
        download_cifar10(data_dir)
    if not os.path.isdir(data_dir):
        raise UsageError("data directory {} does not exist; pass --data-dir DIR (make one with "
                         "`edgescope-dataset {} --out DIR`)".format(data_dir, name))
    if name == "cifar10":
        return CIFAR10Files(data_dir, train=True, transform=cifar10_train_transform())
    return _image_folder(data_dir, image_size)


def dataset_identity(dataset: Any, data_dir: str) -> str:
    """run_info's ``dataset_id``: which data an epoch reads, hashed from each file's path under ``data_dir``, size
    and class. A copy of the dataset on another disk keeps it; two image folders of as many images, or a resized
    copy, differ: report.configuration's workload tells them apart. One stat per file, once a run."""
    files = getattr(dataset, "files", None)  # CIFAR10Files' batch files, else an image folder's samples
    entries = [(path, "") for path in files] if files is not None else [(p, str(c)) for p, c in dataset.samples]
    digest = hashlib.sha256()
    for path, label in sorted(entries):
        try:
            size = os.stat(path).st_size
        except OSError:  # gone since the scan: the epoch will say so; the identity still names the list
            size = -1
        digest.update("{}\0{}\0{}\n".format(os.path.relpath(path, data_dir), size, label).encode(
            "utf-8", "surrogateescape"))
    return digest.hexdigest()[:12]


# How far the image-folder scan goes before it gives up (--data-dir /proc or / would otherwise walk for minutes):
# ImageNet-21k's 14 M images are beyond it, so are folders nested deeper than anyone sorts images.
IMAGEFOLDER_LIMITS = ScanLimits(files=20000000, depth=32, seconds=300.0)
SCAN_NOTE_SECONDS = 10.0  # a scan still going says so this often


class _ScannedFolder(ImageFolder):
    """ImageFolder over the classes and files our bounded walk found (torchvision's own walk follows links
    with no memory of where it has been, so a link loop multiplied the images without a word)."""

    def __init__(self, root: str, classes: List[str], samples: List[Tuple[str, int]], **kwargs: Any) -> None:
        self._found = classes, samples
        super().__init__(root, **kwargs)

    def find_classes(self, directory: Any) -> Tuple[List[str], Dict[str, int]]:
        classes = self._found[0]
        return classes, {name: i for i, name in enumerate(classes)}

    def make_dataset(self, *args: Any, **kwargs: Any) -> List[Tuple[str, int]]:
        return self._found[1]


def _image_folder(data_dir: str, image_size: int) -> ImageFolder:
    """One sub-folder of images per class, walked once and within IMAGEFOLDER_LIMITS; every file or folder
    left out (outside --data-dir, a folder already walked, unreadable) is counted in one note line."""
    inside = _InsideFolder(data_dir)
    left_out = {}  # type: Dict[str, List[str]]
    by_class = {}  # type: Dict[str, List[str]]

    def leave_out(why: str, path: str) -> None:
        left_out.setdefault(why, []).append(path)

    next_word = time.monotonic() + SCAN_NOTE_SECONDS
    try:
        for count, (folder, name) in enumerate(regular_files(
                data_dir, lambda e: leave_out("unreadable", str(e.filename)), follow_links=True,
                on_skip=lambda path, why: leave_out(why, path), limits=IMAGEFOLDER_LIMITS)):
            if time.monotonic() > next_word:  # a long scan is not a silent one
                print("edgescope-train: note: still listing {}: {:,} files so far (gives up after {:.0f} s)".format(
                    data_dir, count, IMAGEFOLDER_LIMITS.seconds), file=sys.stderr, flush=True)
                next_word += SCAN_NOTE_SECONDS
            relative = os.path.relpath(folder, data_dir)
            if relative != os.curdir:  # files beside the class folders belong to no class
                files = by_class.setdefault(relative.split(os.sep)[0], [])
                if inside(os.path.join(folder, name)):
                    files.append(os.path.join(folder, name))
    except ScanTooBig as error:
        raise UsageError("--data-dir {}; pass the dataset's own folder".format(error))
    except OSError as error:
        raise UsageError("--data-dir {}: cannot list it ({})".format(data_dir, error.strerror or error))
    left_out.setdefault("outside", []).extend(inside.skipped)
    classes = sorted(by_class)
    empty = [name for name in classes if not by_class[name]]
    if not classes or empty:
        named = ", ".join((empty or [data_dir])[:3]) + (" and {} more".format(len(empty) - 3) if len(empty) > 3 else "")
        raise UsageError("{} is not an image folder (one sub-folder of images per class): no images ({}) in {}"
                         .format(data_dir, ", ".join(IMG_EXTENSIONS), named))
    samples = [(path, i) for i, name in enumerate(classes) for path in sorted(by_class[name])]
    for why, what in sorted(left_out.items()):
        if what:
            print("edgescope-train: note: skipped {} {} (such as {}); {}".format(len(what), SKIPPED[why], what[0],
                  SKIPPED_FIX[why].format(data_dir)), file=sys.stderr, flush=True)
    return _ScannedFolder(data_dir, classes, samples, transform=imagefolder_train_transform(image_size),
                          loader=load_image_timed)


SKIPPED = {"outside": "file(s) or folder(s) whose real path is outside --data-dir",
           "seen": "link(s) to folders already walked", "unreadable": "folder(s) that could not be read"}
SKIPPED_FIX = {"outside": "copy them into {} to train on them", "seen": "each folder is read once",
               "unreadable": "check the permissions under {}"}


class _InsideFolder:
    """The scan's file filter: image extensions, and only files really inside the folder (links are followed,
    and a link to a file could lead anywhere, e.g. to /etc)."""

    def __init__(self, folder: str) -> None:
        self.root = os.path.join(os.path.realpath(folder), "")
        self.skipped = []  # type: List[str]

    def __call__(self, path: str) -> bool:
        if not has_file_allowed_extension(path, IMG_EXTENSIONS):
            return False
        if not os.path.realpath(path).startswith(self.root):
            self.skipped.append(path)
            return False
        return True


class _ReadClock:
    """Seconds, CPU seconds and bytes this process has spent in ``timed_read`` (each DataLoader worker is a process
    of its own)."""
    seconds = 0.0
    cpu_seconds = 0.0
    bytes = 0


def timed_read(path: str) -> bytes:
    """A file's bytes (open + read), the wall time it took, the CPU time the reading thread spent in it (the system
    calls, the copy out of the page cache: what caching leaves) and the bytes added to ``_ReadClock``."""
    began, cpu_began = time.perf_counter(), time.thread_time()
    data = b""
    try:
        data = read_bytes(path)
        return data
    finally:
        _ReadClock.seconds += time.perf_counter() - began
        _ReadClock.cpu_seconds += time.thread_time() - cpu_began
        _ReadClock.bytes += len(data)


def load_image_timed(path: str) -> Image.Image:
    """``load_image`` with its file read timed apart from its decode."""
    return load_image(path, timed_read)


def probe_after_wait(dataset: Any, wait_s: float, epoch_cpu_s: float, seed: int,
                     stopped: Callable[[], bool] = lambda: False) -> Optional[AfterWait]:
    """``trainer.afterwait.probe`` on a seeded choice of an image folder's own samples: each file read once, then
    decoded and augmented from its bytes in this process as a worker does (on one torch thread; the probe times no
    read: a slow disk's reads wait every time), the training's random state (the augmentations draw from it) left
    as it was. None where the epoch's waits per sample were too short to matter (``MIN_WAIT_S``), for a dataset
    read whole at start-up (CIFAR-10: no waits), where a file can no longer be read, or once ``stopped()``."""
    if wait_s < afterwait.MIN_WAIT_S or not isinstance(dataset, ImageFolder) or len(dataset) < 2:
        return None
    indices = random.Random(seed).sample(range(len(dataset)), min(afterwait.SAMPLES, len(dataset)))
    threads, state = torch.get_num_threads(), random.getstate()
    torch.set_num_threads(1)
    try:
        raw = {index: read_bytes(dataset.samples[index][0]) for index in indices if not stopped()}

        def making_cpu_s(index: int) -> float:
            began = time.thread_time()
            image = load_image(dataset.samples[index][0], lambda path: raw[index])
            if dataset.transform is not None:
                dataset.transform(image)
            return time.thread_time() - began
        with torch.random.fork_rng(devices=[]):
            return afterwait.probe(making_cpu_s, indices, wait_s, epoch_cpu_s, stopped)
    except (OSError, DataFileError):
        return None
    finally:
        torch.set_num_threads(threads)
        random.setstate(state)


class Sample(NamedTuple):
    """One item and what making it took, in the process that made it."""
    item: Any
    read_s: float  # ``timed_read`` file reads
    other_s: float  # everything else: decode, augment
    began: float  # time.monotonic()
    cpu_s: float  # time.process_time()
    read_bytes: int
    read_cpu_s: float  # the CPU seconds of its reads (inside ``cpu_s``)


class TimedSamples(Dataset):
    """``dataset``'s items as ``Sample``s: the wall time making each took, split into its ``timed_read`` file reads
    and everything else (decode, augment), with its CPU time and bytes read. A dataset that reads its files up
    front (CIFAR-10 is read whole at start-up) has no reads here: its samples are all preprocessing."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        clock = _maker()
        if clock.delay_began is None:  # the batch's first sample
            clock.delay_began = _waited_for_cpu()
        read_before, read_cpu_before, bytes_before = _ReadClock.seconds, _ReadClock.cpu_seconds, _ReadClock.bytes
        began, cpu_began = time.monotonic(), time.process_time()
        item = self.dataset[index]
        took = time.monotonic() - began
        read = _ReadClock.seconds - read_before
        return Sample(item, read, took - read, began, time.process_time() - cpu_began, _ReadClock.bytes - bytes_before,
                      _ReadClock.cpu_seconds - read_cpu_before)


IO_FIELDS = ("read_bytes", "rchar", "syscr")  # /proc/<pid>/io: from storage, returned by read calls, read calls


class _MakerClock:
    """This process's batches made, its I/O counters at its last batch (a forked worker starts its own: its
    counters began at 0 when it was forked), and its thread's wait for a CPU when its batch in the making began."""
    pid = -1
    batches = 0
    io = (0, 0, 0)
    delay_began = None  # type: Optional[float]


def _maker() -> Type[_MakerClock]:
    if _MakerClock.pid != os.getpid():  # a new worker
        _MakerClock.pid, _MakerClock.batches, _MakerClock.io, _MakerClock.delay_began = os.getpid(), 0, (0, 0, 0), None
    return _MakerClock


def _waited_for_cpu() -> Optional[float]:
    schedule = thread_schedule()
    return None if schedule is None else schedule[1]


def io_since_last_batch(clock: Type[_MakerClock], path: str = "/proc/self/io") -> Optional[Tuple[int, int, int]]:
    """(storage bytes, bytes returned by reads, read calls) of this process since its previous batch; None
    where the kernel keeps no I/O accounting."""
    try:
        with open(path, "rb") as f:
            fields = dict(line.split(b":", 1) for line in f.read().splitlines() if b":" in line)
        now = tuple(int(fields[name.encode()]) for name in IO_FIELDS)
    except (OSError, KeyError, ValueError):
        return None
    delta = tuple(n - last for n, last in zip(now, clock.io))
    clock.io = now  # type: ignore[assignment]
    return delta  # type: ignore[return-value]


def count_io_from_now() -> None:
    """This process's next batch counts its I/O from here. Without workers the main process makes the batches,
    and what it read before an epoch (its start-up's modules and model, the probe after the epoch before:
    trainer.afterwait) is no batch's; a worker is a process of its own, its counters begin with it."""
    io_since_last_batch(_maker())


def run_delay_of_batch(clock: Type[_MakerClock]) -> Optional[float]:
    """Seconds this thread waited for a CPU while making its batch: what tells a making's wait for a core from its
    wait for the device (both are wall time that is not CPU time)."""
    began, clock.delay_began = clock.delay_began, None
    now = _waited_for_cpu()
    return None if now is None or began is None else now - began


def private_memory_now_and_then(clock: Type[_MakerClock]) -> Optional[int]:
    """This process's private memory at its 16th, 32nd, 64th... batch (reading it takes milliseconds, which delay
    the next batch: a few per epoch are lost in it); None at the others."""
    return private_bytes() if clock.batches >= 16 and clock.batches & (clock.batches - 1) == 0 else None


def collate_timed(samples: List[Sample]) -> Tuple[Any, ...]:
    """PyTorch's default collate of the items, with the batch's ``LoadTimes`` appended: the samples' reads, and
    their preprocessing plus this collate; which worker made it, when, its CPU seconds (its reads' apart) and its
    wait for a CPU, its I/O, and now and then its maker's private memory."""
    cpu_began = time.process_time()
    clock = _maker()
    clock.batches += 1
    batch = default_collate([sample.item for sample in samples])
    ready = time.monotonic()
    worker = get_worker_info()
    began = min(sample.began for sample in samples)
    read = sum(sample.read_s for sample in samples)
    times = LoadTimes(read, ready - began - read, -1 if worker is None else worker.id, began, ready,
                      sum(sample.cpu_s for sample in samples) + time.process_time() - cpu_began,
                      sum(sample.read_bytes for sample in samples), io_since_last_batch(clock),
                      sum(sample.read_cpu_s for sample in samples), private_memory_now_and_then(clock),
                      run_delay_of_batch(clock))
    return tuple(batch) + (times,)


def make_loader(dataset: Any, batch_size: int, workers: int, prefetch_factor: int, pin_memory: bool,
                seed: int, timed: bool = False) -> DataLoader:
    """A shuffling loader; its ``generator`` is re-seeded per epoch by the caller for a resumable order.
    ``timed``: each batch is ``(images, targets, LoadTimes)``; ``StepMeter.wrap`` hands the loop the first two."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    extra = {"prefetch_factor": prefetch_factor} if workers > 0 else {}  # type: Dict[str, Any]
    if timed:
        dataset = TimedSamples(dataset)
        extra["collate_fn"] = collate_timed
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                      pin_memory=pin_memory, generator=generator, **extra)


class SyntheticBatches:
    """DS-Analyzer's synthetic-data pass: the loader's batch count and sizes, every batch one random batch made
    once on ``device`` in the dataset's sample shape. No file is read, nothing decoded or copied per batch, so
    an epoch takes the model's compute alone (its "ingestion rate"); the what-ifs' floor. Like the real loader
    it has a ``generator`` the caller re-seeds (unused: every epoch trains on the same batch)."""

    def __init__(self, dataset: Any, batch_size: int, device: torch.device, seed: int) -> None:
        self.generator = torch.Generator()
        self.generator.manual_seed(seed)
        full, rest = divmod(len(dataset), batch_size)
        self.sizes = [batch_size] * full + ([rest] if rest else [])  # as DataLoader(drop_last=False)
        shape = (min(batch_size, len(dataset)),) + tuple(dataset[0][0].shape)  # one sample read, at start-up
        self.images = torch.randn(shape, generator=self.generator).to(device)
        self.targets = torch.randint(len(dataset.classes), shape[:1], generator=self.generator).to(device)

    def __len__(self) -> int:
        return len(self.sizes)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        for size in self.sizes:
            yield self.images[:size], self.targets[:size]
