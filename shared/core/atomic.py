"""Atomic writes: a reader sees the old content or the new one, never half.

Every writer puts its bytes into a temporary sibling (same directory, hence
the same file system) and renames it into place with `os.replace`, which
POSIX and Windows both perform atomically for files. Directories are swapped
with two renames (old away, new in); a crash between them leaves the final
name absent, never half-filled.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_dir", "optional_atomic_dir", "check_writable_dir"]

# Permissions a plain open() would give (0o666 / 0o777 minus the umask);
# mkstemp/mkdtemp create 0o600 / 0o700, which would make shared caches unreadable.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK
_DIR_MODE = 0o777 & ~_UMASK


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write `data` to `path` atomically, creating parent folders.

    Args:
        path: destination file; replaced if it exists.
        data: the complete new content.

    Returns:
        The destination as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically (no newline translation).

    Args:
        path: destination file; replaced if it exists.
        text: the complete new content.
        encoding: text encoding.

    Returns:
        The destination as a Path.
    """
    return atomic_write_bytes(path, text.encode(encoding))


@contextlib.contextmanager
def atomic_dir(final_path):
    """Build a directory under a temporary name, then move it to `final_path`.

    On success an existing `final_path` is renamed away, the new directory is
    renamed in, and the old one is removed. On an exception the temporary
    directory is deleted and `final_path` is left untouched.

    Args:
        final_path: where the finished directory must end up.

    Yields:
        The temporary directory (a sibling of `final_path`) to fill.
    """
    final = Path(final_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, _DIR_MODE)
        _swap_in(tmp, final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _name_final(exc, tmp, final)
        raise


def _name_final(exc: BaseException, tmp: Path, final: Path) -> None:
    """A message that names the temporary folder names the final one instead:
    the user never sees `.out.xxxx.tmp` (it is gone once the error is shown)."""
    if not exc.args or not isinstance(exc.args[0], str):
        return
    text = exc.args[0]
    for internal in {str(tmp), str(tmp.resolve())}:
        text = text.replace(internal, str(final))
    if text != exc.args[0]:
        exc.args = (text, *exc.args[1:])


def _swap_in(new: Path, final: Path) -> None:
    """Rename `new` to `final`, replacing (and then deleting) what was there."""
    if not os.path.lexists(final):
        os.rename(new, final)
        return
    old = final.with_name(f".{final.name}.{uuid.uuid4().hex}.old")
    os.rename(final, old)
    try:
        os.rename(new, final)
    except BaseException:
        os.rename(old, final)
        raise
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class optional_atomic_dir:
    """atomic_dir(out) as a context manager yielding a Path, or None when out is None."""

    def __init__(self, out: Path | None):
        self.out = out
        self._cm = None

    def __enter__(self):
        if self.out is None:
            return None
        self._cm = atomic_dir(self.out)
        return Path(self._cm.__enter__())

    def __exit__(self, *exc):
        if self._cm is not None:
            return self._cm.__exit__(*exc)
        return False


def check_writable_dir(out: Path) -> None:
    """Refuse (UsageError, one line) an output folder that cannot be created or replaced."""
    from shared.core.errors import UsageError

    parent = out.resolve().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise UsageError(f"cannot write the output folder {out}: {probe} is not a writable directory")
    if out.exists() and not out.is_dir():
        raise UsageError(f"cannot write the output folder {out}: it exists and is not a directory")
