"""The one reader of untrusted files: CIFAR pickles, checkpoints and images.

Files in --data-dir or --checkpoint-dir may be corrupt, truncated or planted.
None of them may run code (``pickle`` would run any ``__reduce__``), and a bad
one becomes one ``DataFileError`` line naming the file and the fix, also when
it is read in a DataLoader worker process.
"""
import hashlib
import inspect
import io
import pickle
import re
import sys
import types
import warnings
import zipfile
from typing import Any, Callable, Dict, Set, Tuple

import torch
from PIL import Image

from exporter.readfile import Unreadable, open_regular
from trainer.errors import UsageError

# What the CIFAR-10 python files need (checked against the official ones and numpy 1 and 2 pickles):
# numpy arrays and dtypes, and protocol-2 bytes (``_codecs.encode``). dict, list, str and int need no class.
PICKLE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}
# What an edgescope-train checkpoint needs where torch has no weights_only (a state dict of tensors, lists, dicts).
CHECKPOINT_GLOBALS = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
                      ("torch._utils", "_rebuild_parameter")} | {
    ("torch", kind + "Storage") for kind in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char",
                                             "Byte", "Bool")}
# An official CIFAR-10 batch is 31 MB; edgescope-dataset's largest (200,000 images: --train-images 1,000,000 or
# --test-images 200,000) pickles up to 6.2 KB an image (protocol 2 writes each byte above 0x7f as two): 1.24 GB.
CIFAR_FILE_MAX_BYTES = 2 << 30
TORCH_HAS_WEIGHTS_ONLY = "weights_only" in inspect.signature(torch.load).parameters  # torch >= 1.13


class DataFileError(UsageError):
    """A file that cannot be read. Raised in a DataLoader worker, it comes back re-made from the worker's whole
    traceback text; only its own last line (``module.DataFileError: message``) is kept."""

    def __init__(self, message: str) -> None:
        if "\nOriginal Traceback" in message:
            message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
        super().__init__(message)


def describe(error: BaseException) -> str:
    """The error on one line, short enough to read."""
    text = " ".join(str(error).split()) or "no detail"
    return "{}: {}".format(type(error).__name__, text[:200])


class _RestrictedUnpickler(pickle.Unpickler):
    allowed = PICKLE_GLOBALS  # type: Set[Tuple[str, str]]
    purpose = "a CIFAR file"

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError("refused to load {}.{} (not part of {})".format(module, name, self.purpose))
        return super().find_class(module, name)


class _CheckpointUnpickler(_RestrictedUnpickler):
    allowed = CHECKPOINT_GLOBALS
    purpose = "a checkpoint"


# torch.load(pickle_module=...) for a torch without weights_only: the module-like object it needs
CHECKPOINT_PICKLE = types.SimpleNamespace(
    __name__="trainer.safe_load.CHECKPOINT_PICKLE", Unpickler=_CheckpointUnpickler,
    load=lambda f, **kwargs: _CheckpointUnpickler(f, **kwargs).load())


def load_pickle(path: str, fix: str) -> Tuple[Any, str]:
    """A CIFAR-style pickle, with no class outside PICKLE_GLOBALS (so no code runs), and the md5 of the bytes it
    came from: both from one open regular file (a FIFO would block, /dev/zero never end, and a file swapped
    between an md5 check and the load could pass as official); ``fix`` ends the error."""
    try:
        with open_regular(path, CIFAR_FILE_MAX_BYTES) as f:
            digest = hashlib.md5()
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
            f.seek(0)
            return _RestrictedUnpickler(f, encoding="latin1").load(), digest.hexdigest()
    except (OSError, Unreadable) as error:
        raise DataFileError("cannot read {}: {}; {}".format(path, getattr(error, "strerror", None) or error, fix))
    except Exception as error:  # truncated, random bytes, a refused class: all "not a data file"
        raise DataFileError("{} is not a readable CIFAR-10 file ({}); {}".format(path, describe(error), fix))


def load_checkpoint(path: str, device: torch.device) -> Dict[str, Any]:
    """torch.load without code execution: weights_only where torch has it; an older torch (JetPack 5 may ship
    one) gets our restricted unpickler instead, and a note says so. The file is opened as a regular file without
    blocking (a FIFO would wait for ever, /dev/zero never end), with no size bound: torch reads it record by record
    (never whole into one bytes object) and its tensors, stored uncompressed, take no more memory than the file's
    size, which is the model's own (VGG11's weights and momentum: 1.1 GB); a bound would refuse a big model."""
    fix = "delete it, or point --checkpoint-dir at another folder and run without --resume"
    try:
        f = open_regular(path)
    except (OSError, Unreadable) as error:
        raise DataFileError("cannot read checkpoint {}: {}; {}".format(path, getattr(error, "strerror", None) or error,
                                                                       fix))
    with f:
        try:
            is_archive = zipfile.is_zipfile(f)
            f.seek(0)
        except OSError as error:
            raise DataFileError("cannot read checkpoint {}: {}; {}".format(path, error.strerror or error, fix))
        if not is_archive:  # torch would try it as a legacy pickle and advise weights_only=False: never take that
            raise DataFileError("{} is not a checkpoint (not the zip archive torch.save writes); {}".format(path, fix))
        if TORCH_HAS_WEIGHTS_ONLY:
            extra = {"weights_only": True}  # type: Dict[str, Any]
        else:
            extra = {"pickle_module": CHECKPOINT_PICKLE}
            print("edgescope-train: note: torch {} has no weights_only; {} is read with edgescope's restricted "
                  "unpickler (tensors, lists, dicts only)".format(torch.__version__, path), file=sys.stderr)
        try:
            with warnings.catch_warnings():  # torch warns (two lines) of files it then refuses: ours says it
                warnings.simplefilter("ignore")
                return torch.load(f, map_location=device, **extra)
        except OSError as error:
            raise DataFileError("cannot read checkpoint {}: {}; {}".format(path, error.strerror or error, fix))
        except Exception as error:  # corrupt zip, truncated, a refused class
            raise DataFileError("{} is not a readable checkpoint ({}); {}".format(path, _torch_reason(error), fix))


def _torch_reason(error: BaseException) -> str:
    """torch's refusal without its advice to load with weights_only=False (which would run the file's code):
    the unpickler's own reason ("unsupported GLOBAL posix.system") where it gives one."""
    text = " ".join(str(error).split()).split("WeightsUnpickler error:")[-1].strip()
    reasons = [sentence for sentence in re.split(r"(?<=[.:])\s+", text) if sentence and not any(
        word in sentence for word in ("weights_only", "arbitrary code", "trust", "Please ", "Check the documentation",
                                      "can still be loaded", "\x1b"))]
    return "{}: {}".format(type(error).__name__, " ".join(reasons)[:200] or "it holds more than tensors, lists and "
                                                                            "dicts")


def read_bytes(path: str) -> bytes:
    """A file's raw bytes."""
    with open(path, "rb") as f:
        return f.read()


def load_image(path: str, read: Callable[[str], bytes] = read_bytes) -> Image.Image:
    """An RGB image (torchvision's pil_loader) from the bytes ``read`` returns (the trainer times the read
    apart from the decode); a file that cannot be read or decoded is a DataFileError."""
    try:
        image = Image.open(io.BytesIO(read(path)))
        return image.convert("RGB")
    except Exception as error:  # OSError, UnidentifiedImageError, DecompressionBombError, SyntaxError, ...
        raise DataFileError("{} is not a readable image ({}); remove or replace it in --data-dir"
                            .format(path, describe(error)))
