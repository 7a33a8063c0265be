"""Small secrets kept in the state directory: created once, mode 0600, never logged."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from gateway.errors import StorageError


def read_or_create(path: Path, create: Callable[[], bytes]) -> bytes:
    """Return the bytes in ``path``, first writing ``create()`` there (mode 0600) if absent."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StorageError(f"cannot read secret file {path}: {exc.strerror}") from exc
    data = create()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise StorageError(f"cannot create secret file {path}: {exc.strerror}") from exc
    return data


def write_secret(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, replacing any previous content atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
