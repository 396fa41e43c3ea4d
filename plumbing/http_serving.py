"""What the project's HTTP services (`povwatch intake`, `povwatch desk`) share to run on uvicorn: a listening
socket bound before anything else starts (a port in use is one line, exit 2), and a uvicorn server that stops
cleanly with exit 0 on SIGTERM or Ctrl-C (uvicorn would re-raise the signal after its graceful shutdown, killing
the process before its resources are closed)."""
from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Generator

import uvicorn

from schemas.errors import PovwatchError

__all__ = ["bind", "Server"]


def bind(host: str, port: int, what: str) -> socket.socket:
    """A non-blocking listening socket on host:port; PovwatchError("cannot serve <what> on ...") otherwise."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise PovwatchError(f"cannot serve {what} on {host}:{port}: {exc}") from None
    sock = socket.socket(infos[0][0], socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(infos[0][4])
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise PovwatchError(f"cannot serve {what} on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


class Server(uvicorn.Server):
    """uvicorn's server, ending with exit 0 on SIGTERM or Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
