"""The ports the tests give their child processes (tests/processes.free_port)."""
import socket

from tests.processes import EPHEMERAL_PORTS, free_port


def test_a_free_port_is_never_handed_out_twice_nor_from_the_ephemeral_range():
    """The range outgoing connections take their local ports from: a scrape's could hold a port handed out from
    it before the child given it binds (CI: a trainer's "Address already in use")."""
    with open(EPHEMERAL_PORTS) as f:
        first_ephemeral = int(f.read().split()[0])
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(1024 <= port < first_ephemeral for port in ports), ports
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # and free: a child can bind it
