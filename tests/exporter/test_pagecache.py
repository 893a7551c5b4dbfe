"""Page-cache residency side by side with the real `vmtouch` on the same files (both methods)."""
import os
import re
import subprocess

import pytest

from exporter.pagecache import PAGE, Scanner
from exporter.sources.pagecache import PagecacheSource

METHODS = ("cachestat", "mincore")


def _vmtouch(path):
    """(files, resident pages, total pages) as vmtouch reports them; -m so files > 500 MB count too."""
    out = subprocess.run(["vmtouch", "-m", "1000G", path], stdout=subprocess.PIPE, universal_newlines=True,
                         check=True).stdout
    files = int(re.search(r"Files: (\d+)", out).group(1))
    res, total = re.search(r"Resident Pages: (\d+)/(\d+)", out).groups()
    return files, int(res), int(total)


@pytest.fixture
def tree(tmp_path):
    """A dataset with known residency: fully cached, evicted, partly read, empty and a 600 MB sparse file."""
    root = tmp_path / "dataset"
    for d in range(4):
        (root / "class{}".format(d)).mkdir(parents=True)
    data = os.urandom(200_000)
    paths = []
    for i in range(120):
        p = root / "class{}".format(i % 4) / "img{:03d}.bin".format(i)
        p.write_bytes(data[: 1000 + 1657 * i])
        paths.append(str(p))
    (root / "empty.bin").write_bytes(b"")
    os.sync()
    for i, p in enumerate(paths):
        fd = os.open(p, os.O_RDONLY)
        try:
            if i % 3 == 0:  # evicted
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            elif i % 3 == 1:  # evicted, then the first 3 pages read back
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.pread(fd, 3 * PAGE, 0)
        finally:
            os.close(fd)
    big = root / "big.bin"
    with open(str(big), "wb") as f:
        f.truncate(600 * 1024 * 1024)  # over vmtouch's default 500 MB limit
    with open(str(big), "rb") as f:
        f.seek(100 * 1024 * 1024)
        f.read(1024 * 1024)
    return str(root)


@pytest.mark.parametrize("method", METHODS)
def test_same_pages_as_vmtouch(tree, method):
    scanner = Scanner(method)
    ours = scanner.scan(tree)
    files, resident, total = _vmtouch(tree)
    assert (ours.files, ours.resident_pages, ours.pages) == (files, resident, total)
    assert ours.pages > 600 * 1024 * 1024 // PAGE  # the 600 MB file counts
    assert 0 < ours.ratio < 1


@pytest.mark.parametrize("method", METHODS)
def test_single_file_and_large_file(tree, method):
    big = os.path.join(tree, "big.bin")
    ours = Scanner(method).scan(big)
    assert ours.files == 1 and ours.pages == 600 * 1024 * 1024 // PAGE
    assert (ours.resident_pages, ours.pages) == _vmtouch(big)[1:]
    assert ours.resident_pages >= 1024 * 1024 // PAGE  # the 1 MiB that was read


def test_hard_links_count_once_like_vmtouch(tree):
    src = os.path.join(tree, "class1", "img001.bin")
    os.link(src, os.path.join(tree, "class0", "link.bin"))
    ours = Scanner().scan(tree)
    assert (ours.files, ours.resident_pages, ours.pages) == _vmtouch(tree)


def test_auto_method_uses_cachestat_on_this_kernel():
    release = tuple(int(x) for x in re.match(r"(\d+)\.(\d+)", os.uname().release).groups())
    assert Scanner().method == ("cachestat" if release >= (6, 5) else "mincore")


def test_source_reports_from_its_own_thread(tree):
    src = PagecacheSource([tree], scan_interval=60)
    try:
        import time
        deadline = time.monotonic() + 10
        while not src.sample() and time.monotonic() < deadline:
            time.sleep(0.02)
        got = {s.name: s.value for s in src.sample()}
    finally:
        src.close()
    files, resident, total = _vmtouch(tree)
    assert got["edgescope_dataset_files"] == files
    assert got["edgescope_dataset_resident_bytes"] == resident * PAGE
    assert got["edgescope_dataset_page_cache_ratio"] == pytest.approx(resident / total)
    assert got["edgescope_dataset_scan_duration_seconds"] > 0


def test_missing_dataset_is_down_with_the_path(tmp_path):
    from exporter.sources.base import SourceDown
    gone = str(tmp_path / "gone")
    src = PagecacheSource([gone], scan_interval=60)
    try:
        import time
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                src.sample()
            except SourceDown as e:
                assert gone in str(e)
                return
            time.sleep(0.02)
        raise AssertionError("a missing dataset was not reported")
    finally:
        src.close()
