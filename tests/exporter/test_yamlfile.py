"""The one YAML loader: what each broken file says, and that a fine file (BOM, anchors) still loads."""
import pytest

from exporter.config import ConfigError
from exporter.yamlfile import MAX_NODES, one_line, read_mapping


def load(tmp_path, content: bytes):
    path = tmp_path / "f.yml"
    path.write_bytes(content)
    return read_mapping(str(path), "--config", ConfigError)


@pytest.mark.parametrize("content,needle", [
    (b"\xef\xbb\xbfa: 1\nb: \xff\n", "f.yml: not UTF-8 text (byte 0xff at line 2); save the settings as UTF-8"),
    (b"a: &a [*a]\n", "f.yml: an alias refers to itself"),
    (b"interval: 1\nlog.level: info\ninterval: 5\n", "f.yml: key 'interval' appears twice in one mapping (line 3); keep one"),
    (b"a: [1, 2\n", "f.yml: not valid YAML at line 2"),
    (b"a: 1\na: 2\n" + b"\t- x\n", "f.yml: not valid YAML at line 3"),
    (b"a: " + b"9" * 5000 + b"\n", "f.yml: a value cannot be read (Exceeds the limit"),
    (b"just text\n", "f.yml: the top level must be a mapping of settings keys to values, not a str"),
])
def test_broken_files_are_one_line(tmp_path, content, needle):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, content)
    assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_missing_file_names_the_flag(tmp_path):
    with pytest.raises(ConfigError, match=r"^--config .*nope.yml: No such file or directory; cannot read the settings$"):
        read_mapping(str(tmp_path / "nope.yml"), "--config", ConfigError)


def test_fine_files_load(tmp_path):
    assert load(tmp_path, b"\xef\xbb\xbfinterval: 2\n") == {"interval": 2}  # a BOM is fine
    assert load(tmp_path, b"") == {} and load(tmp_path, b"# only a comment\n") == {}
    shared = load(tmp_path, b"base: &b {x: 1}\nother: *b\n")  # anchors within the limit are fine
    assert shared["other"] == {"x": 1}
    rows = ", ".join(["*r"] * 10)
    big = "r: &r [{}]\nt: [{}]\n".format(", ".join(["1"] * (MAX_NODES // 20)), rows)
    assert len(load(tmp_path, big.encode())["t"]) == 10  # ~55,000 values expanded: under the cap


def test_one_line_escapes_what_would_break_the_line():
    assert one_line("a\nb\tc\x00d\udcff é") == "a\\nb\\tc\\x00d\\udcff é"
