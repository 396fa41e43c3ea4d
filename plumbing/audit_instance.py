"""Which instance of its party a process writes the audit trail as: claimed with a lock, so that two processes of
one party on one host never write one hash chain (which `povwatch audit verify` would report as `duplicated`).

    claim = claim_instance(run_dir, "monitor", explicit=None)   # "<host>", else "<host>-2", "<host>-3", ...
    claim.instance                                               # the chain's instance while the claim is held
    claim.release()                                              # at stop; the OS releases it when the process ends

A claim is an exclusive `flock` on `<run_dir>/audit-<party>@<instance>.lock`, held until `release` or the end of the
process (a crash too: the kernel drops the lock with the file descriptor). The first free of `<host>`, `<host>-2`,
`<host>-3`, ... is taken, so a restarted process gets its old instance back (its chain continues) and a second
concurrent process the next one. An explicit instance (POVWATCH_AUDIT_INSTANCE) is claimed as given; when another
process holds it, the claim is refused with one line. The lock file holds the claiming process's id, for that line.
"""
from __future__ import annotations

import fcntl
import os
import re
import socket
from pathlib import Path

from schemas.errors import ConfigError

__all__ = ["InstanceClaim", "claim_instance", "default_instance", "lock_path", "MAX_INSTANCES"]

MAX_INSTANCES = 999  # <host>-999: beyond it something is wrong (a runaway), not a real deployment


def default_instance() -> str:
    return socket.gethostname() or "localhost"


def lock_path(run_dir: Path, party: str, instance: str) -> Path:
    party, instance = (re.sub(r"[^A-Za-z0-9._-]", "_", part) for part in (party, instance))
    return run_dir / f"audit-{party}@{instance}.lock"


class InstanceClaim:
    """A held claim: `instance`, the lock file's descriptor (closed by `release`)."""

    def __init__(self, instance: str, path: Path, fd: int) -> None:
        self.instance, self.path, self._fd = instance, path, fd

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)  # closing the descriptor drops the lock; the file stays (removing it would race a claimant)


def _try(run_dir: Path, party: str, instance: str) -> InstanceClaim | None:
    path = lock_path(run_dir, party, instance)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes (PEP 446)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return InstanceClaim(instance, path, fd)


def _holder(path: Path) -> str:
    try:
        pid = path.read_text(encoding="ascii").strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def claim_instance(run_dir: Path, party: str, explicit: str | None = None) -> InstanceClaim:
    """Claim `explicit`, or the first free of `<host>`, `<host>-2`, ...; ConfigError (one line) when it cannot."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if explicit:
            claim = _try(run_dir, party, explicit)
            if claim is None:
                raise ConfigError(
                    f"POVWATCH_AUDIT_INSTANCE={explicit} is already used by another {party} process on this host"
                    f"{_holder(lock_path(run_dir, party, explicit))}: two writers would fork its audit chain; give "
                    "each process its own POVWATCH_AUDIT_INSTANCE, or leave it unset")
            return claim
        host = default_instance()
        for n in range(1, MAX_INSTANCES + 1):
            claim = _try(run_dir, party, host if n == 1 else f"{host}-{n}")
            if claim is not None:
                return claim
    except OSError as exc:
        raise ConfigError(f"cannot claim an audit instance in {run_dir} (POVWATCH_RUN_DIR): {exc}") from None
    raise ConfigError(f"every audit instance {host} .. {host}-{MAX_INSTANCES} of {party} is held by a process on "
                      f"this host (lock files in {run_dir})")
