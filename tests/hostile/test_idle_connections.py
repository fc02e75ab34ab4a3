"""Idle connections lock nobody out of a real ``omnistock serve``: one worker holds more open
connections than granian's default of 1,024 per worker (``OMNISTOCK_MAX_CONNECTIONS``, 10,000),
whether they made a request and are kept alive or never sent a byte, and a new client is still
answered. With granian's default, connection 1,025 waited in the listen queue until another
closed: a few clients' connection pools, or sockets that never send anything, stopped the
service for everyone else.
"""

from __future__ import annotations

import resource
import socket

import httpx
import pytest

from tests.hostile.support import Served, bearer, served  # noqa: F401

IDLE = 1_500


def _room_for(sockets: int) -> None:
    """This process opens the idle connections: its own open-file limit must allow them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = sockets + 256
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"the open-file limit ({hard}) is below {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def test_a_worker_full_of_idle_connections_still_answers_a_new_client(
    served: Served,  # noqa: F811
) -> None:
    _room_for(IDLE)
    quiet: list[socket.socket] = []  # never send a byte
    kept: list[socket.socket] = []  # one request, then kept alive and idle
    try:
        for i in range(IDLE):
            sock = socket.create_connection(("127.0.0.1", served.port), timeout=5)
            if i % 2:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: idle\r\n\r\n")
                assert sock.recv(4096).startswith(b"HTTP/1.1 200"), i
                kept.append(sock)
            else:
                quiet.append(sock)

        answer = httpx.get(f"{served.base}/v1/nodes", headers=bearer("admin"), timeout=5)
        assert answer.status_code == 200
        # The idle connections are all still open: none was dropped to make room.
        for sock in kept:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: idle\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for sock in quiet + kept:
            sock.close()
