"""Property tests: the exporter's settings loader, YAML file and command line, on generated input.

Whatever the file or the flags hold, load() returns settings within their ranges
or raises ConfigError with one line; nothing else escapes.
"""
import math
import os
import tempfile

import yaml
from hypothesis import assume, given, settings, strategies as st

from exporter.config import BY_NAME, ConfigError, load
from exporter.yamlfile import read_mapping

SECONDS = {"interval": (0.01, 3600), "pagecache-interval": (0.01, 86400), "source-timeout": (0.01, 3600)}
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10 ** 30, max_value=10 ** 30),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                    st.sampled_from([".inf", "-1", "0", "1e400", ":9945", "/", "tegrastats", "(("]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
KEYS = st.one_of(st.sampled_from(sorted(BY_NAME)), st.text(max_size=12), st.integers())


def assert_valid(cfg):
    for name, (low, high) in SECONDS.items():
        assert math.isfinite(cfg[name]) and low <= cfg[name] <= high
    assert set(cfg) == set(BY_NAME)


def load_file(content: bytes, argv=()):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cfg.yml")
        with open(path, "wb") as f:
            f.write(content)
        try:
            assert_valid(load(["--config", path] + list(argv)))
        except ConfigError as e:
            assert "\n" not in str(e) and str(e)


@settings(max_examples=150, deadline=None)
@given(st.one_of(VALUES, st.dictionaries(KEYS, VALUES, max_size=5)))
def test_any_yaml_document(doc):
    load_file(yaml.safe_dump(doc, allow_unicode=True).encode("utf-8"))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(BY_NAME)), SCALARS, min_size=1, max_size=3))
def test_known_keys_with_any_value(doc):
    load_file(yaml.safe_dump(doc, allow_unicode=True).encode("utf-8"))


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.binary(max_size=300),
                 st.text(alphabet="&*[]{}:-!|>'\"\n #%@`,?abc019.", max_size=200).map(lambda t: t.encode("utf-8"))))
def test_any_bytes_as_the_file(content):
    load_file(content)


FLAGS = st.sampled_from(["--" + name for name in sorted(BY_NAME)] + ["--config", "--bogus", "-x", "--"])
ARG_VALUES = st.one_of(st.text(max_size=15), st.sampled_from(["inf", "nan", "-inf", "0", "1e309", "-5", "1e-9",
                                                              "0.5", "3601", ":0", ":65536", "[::]:1", "auto"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(FLAGS, ARG_VALUES), max_size=6))
def test_any_command_line(argv):
    assume(not any(a.startswith("-h") or (len(a) > 2 and "--help".startswith(a)) for a in argv))
    try:
        assert_valid(load(argv))
    except ConfigError as e:
        assert "\n" not in str(e) and str(e)


@settings(max_examples=150, deadline=None)
@given(st.one_of(VALUES, st.binary(max_size=200)))
def test_the_yaml_loader_gives_a_mapping_or_one_line(doc):
    content = doc if isinstance(doc, bytes) else yaml.safe_dump(doc, allow_unicode=True).encode("utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "any.yml")
        with open(path, "wb") as f:
            f.write(content)
        try:
            assert isinstance(read_mapping(path, "--flag", ConfigError), dict)
        except ConfigError as e:
            assert "\n" not in str(e) and str(e).startswith(path)
