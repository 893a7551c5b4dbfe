"""The dataset's files in or out of the page cache, without root: eviction is
fdatasync + posix_fadvise(DONTNEED) on each file (vmtouch -e), warming reads
each file once (vmtouch -t). Torch-free: the experiment runner uses it too."""
import os
from typing import Iterator

from exporter.pagecache import regular_files

CHUNK = 1 << 20


def dataset_files(data_dir: str) -> Iterator[str]:
    """Every regular file under ``data_dir`` (links not followed), as the exporter's page-cache scan walks
    them; a sub-folder that cannot be read is skipped, and there are none without a folder."""
    if not os.path.isdir(data_dir):
        return
    for folder, name in regular_files(data_dir, lambda error: None):
        yield os.path.join(folder, name)


def dataset_size(data_dir: str) -> int:
    """Bytes of the dataset's files: what caching it whole would take of the page cache."""
    total = 0
    for path in dataset_files(data_dir):
        try:
            total += os.stat(path).st_size
        except OSError:
            continue
    return total


def evict(data_dir: str) -> int:
    """Drop the dataset's clean pages from the page cache; returns the files done."""
    count = 0
    for path in dataset_files(data_dir):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)  # dirty pages (a freshly written dataset) cannot be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        count += 1
    return count


def warm(data_dir: str) -> int:
    """Read every file of the dataset once, so it sits in the page cache (if it fits in memory)."""
    count = 0
    for path in dataset_files(data_dir):
        with open(path, "rb") as f:
            while f.read(CHUNK):
                pass
        count += 1
    return count
