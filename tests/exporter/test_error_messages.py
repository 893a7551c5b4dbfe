"""Errors name the file and the reason, never ``None`` (an OSError or SSLError may carry no strerror/reason)."""
from unittest import mock

import pytest

from exporter.config import ConfigError
from exporter.server import load_web_config
from exporter.sources.base import SourceDown
from exporter.sources.diskstats import DiskstatsSource


def test_a_certificate_that_is_not_pem_names_the_ssl_error(tmp_path):
    (tmp_path / "server.crt").write_text("not a certificate\n")  # ssl.SSLError with reason None: "PEM lib"
    (tmp_path / "web.yml").write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.crt\n")
    with pytest.raises(ConfigError) as error:
        load_web_config(str(tmp_path / "web.yml"))
    message = str(error.value)
    assert "cannot load ([SSL] PEM lib" in message and "None" not in message, message


def test_an_oserror_without_strerror_is_named_by_its_text(tmp_path):
    source = DiskstatsSource(procfs_root=str(tmp_path))
    with mock.patch("exporter.readfile.os.open", side_effect=OSError("read refused by a test")):
        with pytest.raises(SourceDown) as error:
            source.read()
    assert str(error.value) == "cannot read {}: read refused by a test".format(tmp_path / "diskstats")
