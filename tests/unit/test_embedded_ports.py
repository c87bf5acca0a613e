"""Why the embedded tritonserver could not listen where it is asked to, told before it starts."""

from __future__ import annotations

import socket

from fakescope.serving.embedded import port_problem
from tests.support.servers import free_ports


def test_port_problem_says_in_use_when_something_listens_there():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        taken = listening.getsockname()[1]
        assert port_problem("127.0.0.1", taken) == f"port {taken} on 127.0.0.1 is already in use"


def test_port_problem_gives_the_real_cause_when_the_address_is_not_this_machines():
    (port,) = free_ports(1)
    # TEST-NET-1 (RFC 5737): no interface of any machine has it
    problem = port_problem("192.0.2.1", port)
    assert problem == f"cannot listen on 192.0.2.1:{port}: Cannot assign requested address"


def test_port_problem_is_none_when_the_port_is_free():
    (port,) = free_ports(1)
    assert port_problem("127.0.0.1", port) is None
