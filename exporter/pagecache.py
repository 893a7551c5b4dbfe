"""How much of a dataset sits in the page cache, counted the way vmtouch counts it.

Regular files under a path (symlinks not followed, hard links counted once,
files of any size: vmtouch skips files over 500 MB by default, this does
not): total pages = ceil(size / page size), resident pages from cachestat(2)
where the kernel has it (Linux >= 6.5: one syscall per file, no mapping) and
from mmap + mincore(2) otherwise.

`Scanner.full_pass` counts every file in one pass, as vmtouch does. So that
the cost can be bounded instead, the work also splits in two: a listing
(`list_files`, one stat per file) and a measurement over it
(`Scanner.measure`), of every file (exact) or of files drawn with probability
proportional to their pages (an estimate with a Hoeffding error bound, see
`sample_size`).

The kernel only shows a file's cache to a caller that owns it, may write it,
or has CAP_FOWNER (mm/mincore.c can_do_mincore, mm/filemap.c
can_do_cachestat). For anyone else mincore() says every page is resident and
cachestat() fails with EPERM; either way the file is `Blind`, never measured.
"""
import bisect
import ctypes
import errno
import math
import mmap
import os
import random
import time
from array import array
from typing import Callable, Generator, Iterable, Iterator, List, NamedTuple, Optional, Set, Tuple

PAGE = mmap.PAGESIZE
SYS_CACHESTAT = 451  # same number on x86_64 and aarch64 (the generic syscall table)
SYS_FACCESSAT2 = 439  # idem; Linux >= 5.8
MINCORE_WINDOW = 1 << 30  # map huge files 1 GiB at a time to bound the mincore vector
CAP_FOWNER = 3
CONFIDENCE = 0.99  # of the error bound published with a sampled estimate
METHODS = ("auto", "cachestat", "mincore")
FIX = "run the exporter as the dataset's owner or give it CAP_FOWNER"
BLIND_REASONS = {
    "mincore": "mincore would report every page cached: a file is neither owned nor writable by the exporter, "
               "which lacks CAP_FOWNER; " + FIX,
    "cachestat": "cachestat refused (EPERM): a file is neither owned nor writable by the exporter, "
                 "which lacks CAP_FOWNER; " + FIX,
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
_MAP_FAILED = ctypes.c_void_p(-1).value
_LOW_BIT = bytes(i & 1 for i in range(256))
_AT_EACCESS, _AT_EMPTY_PATH = 0x200, 0x1000

Pace = Callable[[], None]
OnError = Callable[[OSError], None]


class Blind(Exception):
    """The kernel would not show this file's cache to the exporter; the message is the stable reason."""


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Cachestat(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in
                ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]


def _os_error() -> OSError:
    e = ctypes.get_errno()
    return OSError(e, os.strerror(e))


class Residency(NamedTuple):
    files: int
    size_bytes: int
    pages: int
    resident_pages: float  # counted by a full pass; ratio estimate * pages for a sample
    sampled_files: int  # files whose pages were read (draws, for a sample)
    error_bound: float  # half-width of the CONFIDENCE interval of `ratio`; 0 for a full pass

    @property
    def resident_bytes(self) -> float:
        return self.resident_pages * PAGE

    @property
    def ratio(self) -> float:
        return self.resident_pages / self.pages if self.pages else 0.0


def sample_size(max_error: float) -> int:
    """Draws that keep a sampled ratio within max_error of the truth with probability CONFIDENCE.

    Each draw picks a page uniformly (a file with probability pages/total)
    and reads that file's resident fraction X in [0, 1], so E[X] is the
    dataset's ratio and Hoeffding gives P(|mean - ratio| >= e) <= 2 exp(-2 n e^2)
    whatever the file sizes.
    """
    return math.ceil(math.log(2 / (1 - CONFIDENCE)) / (2 * max_error ** 2))


def error_bound(draws: int) -> float:
    """The Hoeffding half-width at CONFIDENCE for `draws` independent draws."""
    return math.sqrt(math.log(2 / (1 - CONFIDENCE)) / (2 * draws))


class _Dir(NamedTuple):
    path: str
    names: str  # the file names joined by "\0": ~30 bytes a file instead of ~80 as a list
    starts: array  # offset of each name in `names`
    ends: array  # cumulative pages up to and including each file


class Listing:
    """The regular files of a dataset with their pages, for exact counts and page-weighted draws."""

    def __init__(self, dirs: List[_Dir], files: int, size_bytes: int) -> None:
        self._dirs = dirs
        self._dir_ends = array("q")
        total = 0
        for d in dirs:
            total += d.ends[-1] if d.ends else 0
            self._dir_ends.append(total)
        self.files, self.size_bytes, self.pages = files, size_bytes, total

    def paths(self) -> Generator[str, None, None]:
        for d in self._dirs:
            for i in range(len(d.starts)):
                yield self._path(d, i)

    def draw(self, rng: random.Random) -> str:
        """A file drawn with probability pages / total pages (files with no pages never)."""
        page = rng.randrange(self.pages)
        k = bisect.bisect_right(self._dir_ends, page)
        d = self._dirs[k]
        return self._path(d, bisect.bisect_right(d.ends, page - (self._dir_ends[k - 1] if k else 0)))

    @staticmethod
    def _path(d: _Dir, i: int) -> str:
        end = d.starts[i + 1] - 1 if i + 1 < len(d.starts) else len(d.names)
        return os.path.join(d.path, d.names[d.starts[i]:end])


class ScanLimits(NamedTuple):
    """How far a walk may go before it gives up: files seen, folders nested below the root, seconds."""
    files: int
    depth: int
    seconds: float


class ScanTooBig(Exception):
    """A walk passed one of its ScanLimits; the message names the root and the limit."""


OnSkip = Callable[[str, str], None]  # (path of a folder not walked, "seen" or "outside")


def regular_files(root: str, on_error: OnError, follow_links: bool = False, on_skip: Optional[OnSkip] = None,
                  limits: Optional[ScanLimits] = None) -> Iterator[Tuple[str, str]]:
    """(directory, name) of `root` itself or of every regular file below it, a directory's files together,
    in sorted order (a directory's links after its real entries, so a folder is found under its own name).

    Each directory is walked once, by (st_dev, st_ino): a bind mount or a link back up the tree (a loop) would
    list the same files again and again. With ``follow_links`` links to files and folders are followed, but
    never to a folder outside ``root``. A folder not walked for either reason goes to ``on_skip``. Past a
    limit the walk raises ScanTooBig. A missing or unreadable root raises; a sub-directory that cannot be
    read or vanishes is passed to on_error and skipped.
    """
    if not os.path.isdir(root):
        if not os.path.isfile(root):
            raise FileNotFoundError(errno.ENOENT, "no such file or directory", root)
        yield os.path.split(os.path.abspath(root))
        return
    inside = os.path.join(os.path.realpath(root), "")
    deadline = time.monotonic() + limits.seconds if limits else math.inf
    seen = set()  # type: Set[Tuple[int, int]]
    files = 0
    stack = [(root, 0)]
    while stack:
        path, depth = stack.pop()
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) in seen:
                if on_skip:
                    on_skip(path, "seen")
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda entry: (entry.is_symlink(), entry.name))  # real ones first
        except OSError as e:
            if path == root:
                raise
            on_error(e)
            continue
        folders = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=follow_links)
                is_file = not is_dir and entry.is_file(follow_symlinks=follow_links)
                outside = is_dir and entry.is_symlink() and \
                    not os.path.join(os.path.realpath(entry.path), "").startswith(inside)
            except OSError as e:  # a link into a folder we may not search
                on_error(e)
                continue
            if outside:
                if on_skip:
                    on_skip(entry.path, "outside")
            elif is_dir:
                folders.append((entry.path, depth + 1))
            elif is_file:
                files += 1
                yield path, entry.name
        if limits:
            _within(root, limits, files, depth, deadline)
        stack.extend(reversed(folders))


def _within(root: str, limits: ScanLimits, files: int, depth: int, deadline: float) -> None:
    """ScanTooBig naming ``root`` and the limit passed, if one is."""
    if files > limits.files:
        raise ScanTooBig("{}: more than {:,} files".format(root, limits.files))
    if depth > limits.depth:
        raise ScanTooBig("{}: folders nested more than {} deep".format(root, limits.depth))
    if time.monotonic() > deadline:
        raise ScanTooBig("{}: still listing files after {:.0f} s ({:,} so far)".format(root, limits.seconds, files))


def list_files(root: str, on_error: OnError) -> Generator[None, None, Listing]:
    """List `root` with one stat per file, one step per file so a caller can pace it; returns the Listing.

    A file that vanishes before its stat is passed to on_error and skipped.
    """
    dirs, files, size = [], 0, 0
    seen = set()  # type: Set[Tuple[int, int]]
    current = None  # type: Optional[str]
    for path, name in regular_files(root, on_error):
        if path != current:
            if current is not None and names:
                dirs.append(_Dir(current, "\0".join(names), starts, ends))
            current, names, starts, ends, offset, pages = path, [], array("I"), array("q"), 0, 0
        try:
            st = os.lstat(os.path.join(path, name))
        except OSError as e:
            on_error(e)
            continue
        if st.st_nlink > 1:
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
        files += 1
        size += st.st_size
        pages += (st.st_size + PAGE - 1) // PAGE
        names.append(name)
        starts.append(offset)
        ends.append(pages)
        offset += len(name) + 1
        yield
    if current is not None and names:
        dirs.append(_Dir(current, "\0".join(names), starts, ends))
    return Listing(dirs, files, size)


def _proc_status() -> Tuple[int, int]:
    """(fsuid, effective capability bits) of this process."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return int(fields["Uid"][3]), int(fields["CapEff"][0], 16)


def _raise(e: OSError) -> None:
    raise e


class Scanner:
    """Reads resident pages of files; `method` is 'cachestat' or 'mincore' ('auto' or None: the best there is)."""

    def __init__(self, method: Optional[str] = None) -> None:
        self._range = _Range(0, 0)  # offset 0, length 0 = to the end of the file
        self._stat = _Cachestat()
        if method in (None, "auto"):
            method = "cachestat" if self._has_cachestat() else "mincore"
        elif method == "cachestat" and not self._has_cachestat():
            raise OSError(errno.ENOSYS, "cachestat(2) is not available here (it needs Linux >= 6.5 and no seccomp "
                                        "filter against it): use --pagecache-method mincore or auto")
        self.method = method
        self._resident = self._cachestat if self.method == "cachestat" else self._mincore
        self._fsuid, caps = _proc_status()
        self._fowner = bool(caps >> CAP_FOWNER & 1)

    def _has_cachestat(self) -> bool:
        """Tried on a memory file of our own, so EPERM can only mean a seccomp filter, not file rights."""
        fd = os.memfd_create("edgescope-cachestat-probe")
        try:
            self._cachestat(fd, 0)
            return True
        except OSError as e:
            if e.errno in (errno.ENOSYS, errno.EPERM):
                return False
            raise
        finally:
            os.close(fd)

    def _cachestat(self, fd: int, size: int) -> int:
        if _libc.syscall(SYS_CACHESTAT, fd, ctypes.byref(self._range), ctypes.byref(self._stat), 0) != 0:
            raise _os_error()
        return self._stat.nr_cache

    def _mincore(self, fd: int, size: int) -> int:
        resident = 0
        for offset in range(0, size, MINCORE_WINDOW):
            length = min(MINCORE_WINDOW, size - offset)
            addr = _libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, offset)
            if addr == _MAP_FAILED:
                raise _os_error()
            try:
                pages = (length + PAGE - 1) // PAGE
                vec = ctypes.create_string_buffer(pages)
                if _libc.mincore(addr, length, vec) != 0:
                    raise _os_error()
                resident += vec.raw[:pages].translate(_LOW_BIT).count(1)
            finally:
                _libc.munmap(addr, length)
        return resident

    def kernel_shows(self, fd: int, st: os.stat_result) -> bool:
        """can_do_mincore(): the file's owner, CAP_FOWNER, or write permission (checked with faccessat2).

        Stricter than the kernel in one case: on a read-only mount faccessat
        refuses write access that mincore would have granted by mode bits.
        """
        if self._fowner or st.st_uid == self._fsuid:
            return True
        ret = _libc.syscall(SYS_FACCESSAT2, fd, b"", os.W_OK, _AT_EACCESS | _AT_EMPTY_PATH)
        if ret != 0 and ctypes.get_errno() in (errno.ENOSYS, errno.EPERM):  # Linux < 5.8 or seccomp: access(2), real ids
            return os.access("/proc/self/fd/{}".format(fd), os.W_OK)
        return ret == 0

    def probe(self, path: str, seen: Optional[Set[Tuple[int, int]]] = None) -> Optional[Tuple[int, int, int]]:
        """(size, pages, resident pages) of one file, None for a hard link already in `seen`.

        Raises OSError if the file cannot be read, Blind if the kernel hides its cache.
        """
        fd = os.open(path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            if seen is not None and st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    return None
                seen.add((st.st_dev, st.st_ino))
            if self.method == "mincore" and not self.kernel_shows(fd, st):
                raise Blind(BLIND_REASONS["mincore"])
            pages = (st.st_size + PAGE - 1) // PAGE
            try:
                return st.st_size, pages, min(pages, self._resident(fd, st.st_size)) if pages else 0
            except PermissionError:  # cachestat's answer to a caller the kernel will not show the file to
                raise Blind(BLIND_REASONS[self.method])
        finally:
            os.close(fd)

    def count(self, paths: Iterable[str], on_error: OnError, pace: Pace) -> Residency:
        """Exact residency of these files; one that cannot be read goes to on_error and is left out."""
        files = size = pages = resident = 0
        seen = set()  # type: Set[Tuple[int, int]]
        for path in paths:
            try:
                got = self.probe(path, seen)
            except OSError as e:
                on_error(e)
                continue
            finally:
                pace()
            if got is not None:
                files += 1
                size, pages, resident = size + got[0], pages + got[1], resident + got[2]
        return Residency(files, size, pages, resident, files, 0.0)

    def full_pass(self, root: str, on_error: OnError, pace: Pace) -> Residency:
        """Exact residency of `root` in one pass, no listing: what vmtouch does."""
        return self.count((os.path.join(d, n) for d, n in regular_files(root, on_error)), on_error, pace)

    def measure(self, listing: Listing, draws: int, on_error: OnError, pace: Pace,
                rng: Optional[random.Random] = None) -> Optional[Residency]:
        """`draws` page-weighted draws from the listing, or every file of it if it has no more files.

        A drawn file that vanished or cannot be read since the listing goes to
        on_error and is left out (None if none could be read); Blind propagates.
        """
        if listing.files <= draws:
            return self.count(listing.paths(), on_error, pace)
        if not listing.pages:  # only empty files: nothing to draw, nothing cached
            return Residency(listing.files, listing.size_bytes, 0, 0, 0, 0.0)
        rng = rng or random.Random()
        fractions = []  # type: List[float]
        for _ in range(draws):
            try:
                _, pages, resident = self.probe(listing.draw(rng))
            except OSError as e:
                on_error(e)
                continue
            finally:
                pace()
            if pages:
                fractions.append(resident / pages)
        if not fractions:
            return None
        ratio = sum(fractions) / len(fractions)
        return Residency(listing.files, listing.size_bytes, listing.pages, ratio * listing.pages,
                         len(fractions), min(1.0, error_bound(len(fractions))))

    def scan(self, root: str) -> Residency:
        """Exact residency of a file or of every regular file below a directory (an unreadable file raises)."""
        return self.full_pass(root, _raise, lambda: None)
