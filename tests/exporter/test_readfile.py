"""Every file read from outside goes through exporter.readfile: a FIFO without a writer, a link to /dev/zero and
a file past its bound are refused at once in one line (a FIFO blocked for ever, /dev/zero read until memory ran
out: 1.8 GB held by the exporter's diskstats under a --procfs-root holding such a link)."""
import os

import pytest
from hypothesis import given, settings, strategies as st

from exporter.config import ConfigError
from exporter.readfile import Unreadable, open_regular, read_regular, size
from exporter.sources.base import SourceDown
from exporter.sources.diskstats import DiskstatsSource
from exporter.sources.meminfo import MeminfoSource
from exporter.yamlfile import read_mapping


def _special(tmp_path, kind: str) -> str:
    path = str(tmp_path / kind)
    if kind.startswith("fifo"):
        os.mkfifo(path)
    elif kind.startswith("zero"):
        os.symlink("/dev/zero", path)
    else:
        os.mkdir(path)
    return path


@pytest.mark.parametrize("kind", ["fifo", "zero", "folder"])
def test_special_files_are_refused_without_reading(tmp_path, kind):
    with pytest.raises((Unreadable, IsADirectoryError)):
        read_regular(_special(tmp_path, kind), 1 << 20)
    with pytest.raises((Unreadable, IsADirectoryError)):
        open_regular(_special(tmp_path, kind + "-again"))  # no bound: still a regular file only


def test_a_file_opened_for_reading_in_parts_is_bounded_by_its_size(tmp_path):
    path = tmp_path / "file"
    path.write_bytes(b"x" * 1000)
    with open_regular(str(path), 1000) as f:
        assert f.read() == b"x" * 1000
    with pytest.raises(Unreadable, match="larger than 999 bytes"):
        open_regular(str(path), 999)


@settings(max_examples=30, deadline=None)
@given(length=st.integers(0, 5000), bound=st.integers(0, 5000))
def test_a_regular_file_is_read_whole_up_to_its_bound_and_refused_past_it(tmp_path_factory, length, bound):
    path = tmp_path_factory.mktemp("f") / "file"
    path.write_bytes(b"x" * length)
    if length <= bound:
        assert read_regular(str(path), bound) == b"x" * length
    else:
        with pytest.raises(Unreadable, match="larger than " + size(bound)):
            read_regular(str(path), bound)


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_procfs_root_files_that_never_end_put_the_source_down_in_one_line(tmp_path, kind):
    os.rename(_special(tmp_path, kind), str(tmp_path / "diskstats"))
    os.symlink("diskstats", str(tmp_path / "meminfo"))
    for source in (DiskstatsSource(procfs_root=str(tmp_path)), MeminfoSource(str(tmp_path))):
        with pytest.raises(SourceDown, match="not a regular file") as error:
            source.sample()
        assert "\n" not in str(error.value)


def test_a_settings_file_on_a_fifo_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="fifo: not a regular file; is it the settings file"):
        read_mapping(_special(tmp_path, "fifo"), "--config", ConfigError)
