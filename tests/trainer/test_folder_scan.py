"""The one dataset walk (exporter.pagecache.regular_files, used by the image folder, the page-cache scans and
the trainer's evict/warm): each folder once whatever the links, never outside the root, within its limits."""
import os
import tempfile
import time

import pytest
from hypothesis import given, settings, strategies as st

from exporter.pagecache import ScanLimits, regular_files
from trainer import data
from trainer.data import build_dataset
from trainer.errors import UsageError
from trainer.synthetic import write_jpeg_folder

FOLDERS = ["class_a", "class_b", "class_a/sub", "class_a/sub/deeper", "class_b/sub"]
TARGETS = [".", "..", "../..", "class_a", "class_b/sub", "class_a/sub/deeper", "OUTSIDE", "OUTSIDE/x.jpg",
           "class_a/1.jpg", "missing"]


@settings(max_examples=80, deadline=None)
@given(files=st.lists(st.tuples(st.sampled_from(FOLDERS), st.sampled_from(["1.jpg", "2.png", "n.txt"])), max_size=8),
       links=st.lists(st.tuples(st.sampled_from(FOLDERS), st.sampled_from(TARGETS)), max_size=6))
def test_each_folder_is_walked_once_and_never_outside(files, links):
    """Whatever links (loops to the folder itself or an ancestor, aliases, links out, dangling) a tree holds:
    no file is listed twice through the same folder, every real file is listed, nothing outside is, and the
    image folder's samples are exactly its images."""
    with tempfile.TemporaryDirectory() as tmp:
        root, outside = os.path.join(tmp, "root"), os.path.join(tmp, "OUTSIDE")
        os.makedirs(outside)
        open(os.path.join(outside, "x.jpg"), "w").close()
        for folder in FOLDERS:
            os.makedirs(os.path.join(root, folder), exist_ok=True)
        real = set()
        for folder, name in files:
            open(os.path.join(root, folder, name), "w").close()
            real.add(os.path.join(root, folder, name))
        for i, (folder, target) in enumerate(links):
            target = os.path.join(tmp, target) if target.startswith("OUTSIDE") else target
            os.symlink(target, os.path.join(root, folder, "link{}".format(i)))
        for follow in (False, True):
            listed = [os.path.join(d, n) for d, n in regular_files(root, lambda e: None, follow_links=follow)]
            by_real_folder = [(os.path.realpath(os.path.dirname(p)), os.path.basename(p)) for p in listed]
            assert len(set(by_real_folder)) == len(by_real_folder), listed
            assert real <= set(listed) and all(os.path.realpath(p).startswith(root + os.sep) for p in listed
                                               if not os.path.islink(p)), listed
            assert follow or set(listed) == real
        try:
            samples = [path for path, _ in build_dataset("imagefolder", root, image_size=8).samples]
        except UsageError as error:  # a class folder without images, as torchvision's
            assert "is not an image folder" in str(error) and "\n" not in str(error)
        else:
            assert {p for p in real if not p.endswith(".txt")} <= set(samples)
            assert all(os.path.realpath(p).startswith(root + os.sep) for p in samples)
            assert len(set(map(os.path.realpath, map(os.path.dirname, samples)))) <= len(FOLDERS)


def test_a_symlink_loop_does_not_multiply_the_images_and_says_so(tmp_path, capsys):
    """24 images and two loops (a folder linking to itself and one to the root): 24 samples, one note."""
    folder = str(tmp_path / "jpegs")
    write_jpeg_folder(folder, images=24, image_size=16, classes=3, seed=1)
    os.symlink(".", os.path.join(folder, "class_00", "again"))
    os.symlink("..", os.path.join(folder, "class_01", "up"))
    dataset = build_dataset("imagefolder", folder, image_size=8)
    assert len(dataset) == 24 and dataset.classes == ["class_00", "class_01", "class_02"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "note: skipped 2 link(s) to folders already walked" in err, err


@pytest.mark.parametrize("limits, expected", [
    (ScanLimits(files=5, depth=32, seconds=300), "more than 5 files"),
    (ScanLimits(files=100, depth=1, seconds=300), "folders nested more than 1 deep"),
    (ScanLimits(files=100, depth=32, seconds=-1), "still listing files after -1 s"),
])
def test_a_scan_past_its_limits_gives_up_in_one_line(tmp_path, monkeypatch, limits, expected):
    folder = str(tmp_path / "jpegs")
    write_jpeg_folder(folder, images=12, image_size=16, classes=2, seed=1)
    os.makedirs(os.path.join(folder, "class_00", "a", "b"))
    monkeypatch.setattr(data, "IMAGEFOLDER_LIMITS", limits)
    with pytest.raises(UsageError) as error:
        build_dataset("imagefolder", folder, image_size=8)
    assert str(error.value) == "--data-dir {}: {}; pass the dataset's own folder".format(folder, expected) \
        or str(error.value).startswith("--data-dir {}: {}".format(folder, expected)), error.value


def test_data_dir_proc_ends_in_one_line_without_walking_the_machine():
    """/proc links to / (/proc/self/root) and loops; the walk stays inside and ends, naming the folder."""
    started = time.monotonic()
    with pytest.raises(UsageError) as error:
        build_dataset("imagefolder", "/proc", image_size=8)
    assert time.monotonic() - started < 60
    message = str(error.value)
    assert "\n" not in message and "/proc" in message, message


def test_a_long_scan_says_what_it_is_doing(tmp_path, monkeypatch, capsys):
    folder = str(tmp_path / "jpegs")
    write_jpeg_folder(folder, images=6, image_size=16, classes=2, seed=1)
    monkeypatch.setattr(data, "SCAN_NOTE_SECONDS", -1.0)  # every file is "later than" the first note
    assert len(build_dataset("imagefolder", folder, image_size=8)) == 6
    err = capsys.readouterr().err
    assert "edgescope-train: note: still listing {}: 0 files so far (gives up after 300 s)".format(folder) in err


def test_a_class_folder_and_a_link_to_it_make_one_class_under_its_own_name(tmp_path, capsys):
    folder = str(tmp_path / "jpegs")
    write_jpeg_folder(folder, images=6, image_size=16, classes=2, seed=1)
    os.symlink("class_01", os.path.join(folder, "class_00_alias"))  # sorts between the two real folders
    dataset = build_dataset("imagefolder", folder, image_size=8)
    assert dataset.classes == ["class_00", "class_01"] and len(dataset) == 6
    assert "skipped 1 link(s) to folders already walked (such as {})".format(
        os.path.join(folder, "class_00_alias")) in capsys.readouterr().err
