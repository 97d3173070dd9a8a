"""Atomic file writes: a temporary file in the same folder, fsync, then a rename.

A process killed at any moment leaves either the old file or the whole new one, never a part.
The file gets the permissions a plain ``open(path, "w")`` would give it: those of the file it
replaces, else ``0o666`` less the process umask (``tempfile.mkstemp`` alone would make it ``0600``,
unreadable by anyone else or by a web server).
:func:`update_marked_section` rewrites one marked section of a file (the README's claims and
benchmark tables) through the same atomic write.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc``).

    Example:
        >>> 0 <= current_umask() <= 0o777
        True
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no read-only query elsewhere: set and restore at once
    os.umask(mask)
    return mask


def _target_mode(path: Path) -> int:
    """Permission bits for a file written at ``path``: the existing file's, else umask-implied."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    """Write ``payload`` to ``path`` all or nothing (parent folders are created).

    The file's mode is the replaced file's, or ``0o666 & ~umask`` for a new file.

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "out.txt"
        >>> atomic_write_bytes(f, b"hi")
        >>> oct(f.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())
        True
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _target_mode(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # POSIX; elsewhere mkstemp's mode stands
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` all or nothing."""
    atomic_write_bytes(path, text.encode("utf-8"))


def update_marked_section(path: str | os.PathLike, name: str, content: str) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in a file.

    Raises:
        ValueError: the file lacks the markers.

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "R.md"
        >>> _ = f.write_text("a\\n<!-- t:start -->\\nold\\n<!-- t:end -->\\nb\\n")
        >>> update_marked_section(f, "t", "new")
        >>> f.read_text()
        'a\\n<!-- t:start -->\\nnew\\n<!-- t:end -->\\nb\\n'
    """
    path = Path(path)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise ValueError(f"{path} lacks the markers {start} ... {end}")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    atomic_write_text(path, f"{head}{start}\n{content}\n{end}{tail}")
