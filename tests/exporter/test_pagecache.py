"""Page-cache residency side by side with the real `vmtouch` on the same files (both methods)."""
import os
import random
import re
import subprocess
import threading
import time

import pytest

from exporter.pagecache import PAGE, Scanner, error_bound, list_files, sample_size
from exporter.sources.pagecache import NOT_YET, CpuBudget, PagecacheSource, Stopped

METHODS = ("cachestat", "mincore")


def list_now(root, on_error):
    """list_files run to the end at once."""
    steps = list_files(root, on_error)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def _vmtouch(*paths):
    """(files, resident pages, total pages) as vmtouch reports them; -m so files > 500 MB count too."""
    out = subprocess.run(["vmtouch", "-m", "1000G"] + list(paths), stdout=subprocess.PIPE, universal_newlines=True,
                         check=True).stdout
    files = int(re.search(r"Files: (\d+)", out).group(1))
    res, total = re.search(r"Resident Pages: (\d+)/(\d+)", out).groups()
    return files, int(res), int(total)


def around_vmtouch(measure, *paths):
    """``measure()`` with vmtouch read just before and just after it: (its result, files, total pages, (fewest,
    most) resident pages). The page cache is live state: between two reads another job's memory pressure can evict
    pages and readahead or writeback can add some (a busy CI machine once gave 1806 resident pages against
    vmtouch's 1805). A change during ``measure`` is also between the two vmtouch reads, so an exact count lies
    within their range; files and pages do not move."""
    files, before, total = _vmtouch(*paths)
    ours = measure()
    files_after, after, total_after = _vmtouch(*paths)
    assert (files_after, total_after) == (files, total)
    return ours, files, total, (min(before, after), max(before, after))


def within(resident, bracket):
    """``resident`` pages lie in vmtouch's range from ``around_vmtouch``."""
    return bracket[0] <= resident <= bracket[1]


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
    ours, files, total, resident = around_vmtouch(lambda: scanner.scan(tree), tree)
    assert (ours.files, ours.pages) == (files, total) and within(ours.resident_pages, resident)
    assert ours.pages > 600 * 1024 * 1024 // PAGE  # the 600 MB file counts
    assert 0 < ours.ratio < 1


@pytest.mark.parametrize("method", METHODS)
def test_single_file_and_large_file(tree, method):
    big = os.path.join(tree, "big.bin")
    ours, _, total, resident = around_vmtouch(lambda: Scanner(method).scan(big), big)
    assert ours.files == 1 and ours.pages == 600 * 1024 * 1024 // PAGE == total
    assert within(ours.resident_pages, resident)
    assert ours.resident_pages >= 1024 * 1024 // PAGE  # the 1 MiB that was read


def test_hard_links_count_once_like_vmtouch(tree):
    src = os.path.join(tree, "class1", "img001.bin")
    os.link(src, os.path.join(tree, "class0", "link.bin"))
    ours, files, total, resident = around_vmtouch(lambda: Scanner().scan(tree), tree)
    assert (ours.files, ours.pages) == (files, total) and within(ours.resident_pages, resident)


def test_auto_method_uses_cachestat_on_this_kernel():
    release = tuple(int(x) for x in re.match(r"(\d+)\.(\d+)", os.uname().release).groups())
    assert Scanner().method == ("cachestat" if release >= (6, 5) else "mincore")


def measured(src, timeout=30):
    """The source's series once every dataset has a first answer (measured or down for a reason)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = {(s.name, s.labels.get("dataset"), s.labels.get("reason")): s.value for s in src.sample()}
        if not any(k[2] == NOT_YET for k in got):
            return got
        time.sleep(0.02)
    raise AssertionError("no page-cache answer in {} s".format(timeout))


def first_answer(datasets, **options):
    """A new source's first series: it measures in its own thread from the start, so it lives inside
    ``around_vmtouch``'s measurement."""
    src = PagecacheSource(datasets, scan_interval=60, **options)
    try:
        return measured(src)
    finally:
        src.close()


@pytest.mark.parametrize("max_error", [0.03, 0])  # a listing with fewer files than 2944 draws; one full pass
def test_source_reports_from_its_own_thread(tree, max_error):
    got, files, total, resident = around_vmtouch(
        lambda: first_answer([tree], max_error=max_error, cpu_budget=0), tree)
    got = {k[0]: v for k, v in got.items()}
    assert files < sample_size(0.03)  # so every file is measured: exact
    assert got["edgescope_dataset_up"] == 1 and got["edgescope_dataset_scan_errors_total"] == 0
    assert got["edgescope_dataset_files"] == got["edgescope_dataset_sampled_files"] == files
    pages = got["edgescope_dataset_resident_bytes"] / PAGE
    assert pages == int(pages) and within(pages, resident)
    assert got["edgescope_dataset_page_cache_ratio"] == pytest.approx(pages / total)
    assert got["edgescope_dataset_page_cache_ratio_error_bound"] == 0
    assert got["edgescope_dataset_scan_duration_seconds"] > 0


def test_missing_dataset_is_down_with_a_stable_reason_and_the_others_carry_on(tmp_path, tree):
    gone = str(tmp_path / "gone")
    got, _, total, resident = around_vmtouch(lambda: first_answer([gone, tree], cpu_budget=0), tree)
    assert got[("edgescope_dataset_up", gone, None)] == 0
    assert got[("edgescope_dataset_down_info", gone, "dataset path does not exist")] == 1
    assert not any(k[1] == gone and k[0] == "edgescope_dataset_page_cache_ratio" for k in got)
    assert got[("edgescope_dataset_up", tree, None)] == 1
    assert within(round(got[("edgescope_dataset_page_cache_ratio", tree, None)] * total), resident)


def test_files_deleted_mid_scan_are_skipped_and_counted(tree):
    """Files removed while a measurement runs: counted, left out, and the rest equals vmtouch on what is left."""
    scanner = Scanner("mincore")
    listing = list_now(tree, pytest.fail)
    doomed = list(listing.paths())[-7:]
    errors = []

    def delete_once():
        while doomed:
            os.remove(doomed.pop())

    kept = [p for p in listing.paths() if p not in doomed]
    res, files, total, resident = around_vmtouch(
        lambda: scanner.count(listing.paths(), errors.append, delete_once), *kept)
    assert len(errors) == 7 and all(isinstance(e, FileNotFoundError) for e in errors)
    assert (res.files, res.pages) == (files, total) and within(res.resident_pages, resident)


def test_sample_size_is_the_hoeffding_bound():
    assert sample_size(0.03) == 2944  # ceil(ln(2 / 0.01) / (2 * 0.03^2))
    for e in (0.01, 0.03, 0.1):
        n = sample_size(e)
        assert error_bound(n) <= e < error_bound(n - 1)


def _evict(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.fixture
def half_cached(tmp_path):
    """3000 files of 4-16 KiB with every other file evicted, plus a 64 MiB file a quarter cached (skewed sizes)."""
    root = tmp_path / "half"
    blob = os.urandom(16384)
    for i in range(3000):
        d = root / "c{:02d}".format(i % 30)
        d.mkdir(parents=True, exist_ok=True)
        (d / "f{:04d}.bin".format(i)).write_bytes(blob[: 4096 + (i * 7919) % 12289])
    big = root / "big.bin"
    with open(str(big), "wb") as f:
        f.truncate(64 << 20)
    os.sync()
    for i, p in enumerate(sorted(root.glob("c*/f*.bin"))):
        if i % 2:
            _evict(str(p))
    _evict(str(big))
    with open(str(big), "rb") as f:
        f.read(16 << 20)
    return str(root)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [1, 2])
def test_sampled_ratio_is_within_its_bound_of_vmtouch(half_cached, method, seed):
    scanner = Scanner(method)
    listing = list_now(half_cached, pytest.fail)
    draws = sample_size(0.06)
    res = scanner.measure(listing, draws, pytest.fail, lambda: None, random.Random(seed))
    files, resident, total = _vmtouch(half_cached)
    assert (res.files, res.pages, res.sampled_files) == (files, total, draws) and draws < files
    assert res.error_bound == pytest.approx(error_bound(draws)) and res.error_bound <= 0.06
    assert abs(res.ratio - resident / total) <= res.error_bound, (res.ratio, resident / total)
    assert res.resident_bytes == pytest.approx(res.ratio * total * PAGE)


def test_source_publishes_a_sample_as_such(half_cached):
    src = PagecacheSource([half_cached], scan_interval=60, method="mincore", max_error=0.1)
    try:
        got = {k[0]: v for k, v in measured(src).items()}
    finally:
        src.close()
    files, resident, total = _vmtouch(half_cached)
    assert got["edgescope_dataset_files"] == files and got["edgescope_dataset_sampled_files"] == sample_size(0.1) < files
    assert got["edgescope_dataset_page_cache_ratio_error_bound"] == pytest.approx(error_bound(sample_size(0.1)))
    assert abs(got["edgescope_dataset_page_cache_ratio"] - resident / total) <= got["edgescope_dataset_page_cache_ratio_error_bound"]


def test_many_empty_files_sample_nothing(tmp_path):
    for i in range(30):
        (tmp_path / "e{}".format(i)).write_bytes(b"")
    res = Scanner().measure(list_now(str(tmp_path), pytest.fail), 10, pytest.fail, lambda: None)
    assert (res.files, res.pages, res.sampled_files, res.ratio) == (30, 0, 0, 0.0) == (_vmtouch(str(tmp_path))[0], 0, 0, 0.0)


def test_budget_bounds_cpu_per_wall_second():
    """The token bucket on fake clocks: work of 1 ms CPU per call never runs ahead of rate * wall + burst."""
    clock = {"wall": 0.0, "cpu": 0.0}

    class FakeStop:
        def is_set(self):
            return False

        def wait(self, seconds):
            clock["wall"] += seconds
            return False

    budget = CpuBudget(0.01, 0.3, FakeStop(), wall=lambda: clock["wall"], cpu=lambda: clock["cpu"])
    for _ in range(5000):
        clock["cpu"] += 0.001
        clock["wall"] += 0.001
        budget.pace()
        assert clock["cpu"] <= 0.01 * clock["wall"] + 0.3 + 0.001
    assert clock["cpu"] / clock["wall"] == pytest.approx(0.01, rel=0.1)  # and it does not run slower either


def test_budget_zero_is_no_limit_and_stop_interrupts():
    stop = threading.Event()
    budget = CpuBudget(0, 0, stop, wall=lambda: 0.0, cpu=lambda: 1e9)
    budget.pace()
    stop.set()
    with pytest.raises(Stopped):
        budget.pace()
