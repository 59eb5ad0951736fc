"""Connected loopback TCP sockets for tests that drive the pump by hand."""

from __future__ import annotations

import socket
from typing import Any


def tcp_pairs(n: int) -> list[tuple[socket.socket, socket.socket]]:
    """``n`` connected pairs on 127.0.0.1: (server side with TCP_NODELAY, client side)."""
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(n)
        pairs = []
        for _ in range(n):
            client = socket.create_connection(listener.getsockname())
            server, _ = listener.accept()
            server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pairs.append((server, client))
        return pairs
    finally:
        listener.close()


class SendRecorder:
    """A socket stand-in that records direct sends (and otherwise delegates)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sends: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sends.append(bytes(data))
        return self.sock.send(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)
