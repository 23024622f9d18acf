"""Whose fault is an exception, and which exit code says so.

The one rule (used by compare.py's `main` for every command):

1. Out of memory is never a verdict: MemoryError (numpy's allocation errors
   included), torch's OutOfMemoryError, TensorFlow's ResourceExhaustedError,
   or a message saying the allocator failed, anywhere in the exception's
   chain -> EXIT_OOM.
2. The exception is the user's when the innermost frame of its traceback that
   is not library code (the standard library, site-packages, `<frozen ...>`)
   belongs to the user: a file outside this project's shared/, keras_impl/,
   torch_impl/ and compare.py, or a module loaded as the user's
   (`register`: model specs and --plugin modules, also from site-packages).
   Library frames are looked through, so a shape error raised inside Keras
   by the user's Dense call, or inside torch by the user's forward, is the
   user's; raised inside torch by this project's own call, it is ours.
   A wrapper a library raised around another error (Keras' "could not be
   deserialized" TypeError around a custom layer's error) is looked through
   to that error; one this project raised is not. A SyntaxError names its
   file directly. -> EXIT_USAGE with one line naming the user's file:line,
   the function and the exception.
3. Anything else is a bug of this tool -> EXIT_INTERNAL, with its traceback.

Framework-free: the frameworks' errors are recognised by class name and message.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EXIT_OK", "EXIT_PARITY", "EXIT_USAGE", "EXIT_INTERNAL", "EXIT_OOM", "UserFault", "register",
           "is_out_of_memory", "mentions_out_of_memory", "user_fault", "describe"]

EXIT_OK = 0  # every check passed
EXIT_PARITY = 1  # a parity check failed: the only code CI may read as "the models differ"
EXIT_USAGE = 2  # bad usage, bad input, or an error raised by the user's own code
EXIT_INTERNAL = 3  # a bug in keras-torch-parity
EXIT_OOM = 4  # ran out of memory

# This project's own code: these folders and compare.py under the repository root.
_ROOT = Path(__file__).resolve().parents[2]
_OWN_DIRS = tuple(str(_ROOT / d) + os.sep for d in ("shared", "keras_impl", "torch_impl"))
_OWN_FILES = (str(_ROOT / "compare.py"),)
# Installed code: the standard library and every site-packages folder.
_LIBRARY_DIRS = tuple(sorted({str(Path(p).resolve()) + os.sep for p in (
    *(sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")),
    *site.getsitepackages(), site.getusersitepackages()) if p}))
_LIBRARY_PARTS = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)
# The standard library's own folders: a spec naming one of its modules (`json:dumps`)
# makes nothing of it the user's (its errors are still a library's).
_STDLIB_DIRS = tuple(sorted({str(Path(p).resolve()) + os.sep for p in (
    sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib")) if p}))
# Exception class names (anywhere in the MRO) and message fragments that mean the memory ran out.
_OOM_CLASSES = {"MemoryError", "OutOfMemoryError", "ResourceExhaustedError"}
_OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory", "oom when allocating",
                 "failed to allocate memory")
# Top packages never registered as the user's, even when a spec names one of them.
_FRAMEWORKS = {"torch", "tensorflow", "keras", "numpy", "shared", "keras_impl", "torch_impl", "compare"}
_CHAIN_LIMIT = 16  # links of __cause__ / __context__ followed at most (a cycle or a very long chain)

_user_paths: set = set()  # resolved files and package folders registered as the user's


@dataclass(frozen=True)
class UserFault:
    """Where the user's code raised: file (as shown), line, function, and the exception."""

    file: str
    line: int
    function: str
    exc_type: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line} in {self.function}()" if self.function != "<module>" \
            else f"{self.file}:{self.line} (while importing it)"
        text = f": {self.message}" if self.message else ""
        return f"your code raised {self.exc_type} at {where}{text}"


def register(module) -> None:
    """Count a module loaded from the user (a model spec, a --plugin) as user code,
    also when it is installed in site-packages: its file, and its top package's
    folder (its layers' forward, called by torch, is the user's too). Never this
    project's files, the frameworks' packages (`torch.nn:Linear` as a spec), nor
    the standard library (`json:dumps`)."""
    top_name = getattr(module, "__name__", "").partition(".")[0]
    file = getattr(module, "__file__", None)
    paths = [os.path.realpath(file)] if file else []
    if top_name not in _FRAMEWORKS:
        paths += [os.path.realpath(f) + os.sep for f in getattr(sys.modules.get(top_name), "__path__", None) or ()]
    _user_paths.update(p for p in paths if not _own(p) and not _own(p + os.sep) and not _stdlib(p))


def _stdlib(path: str) -> bool:
    return path.startswith(_STDLIB_DIRS) and not any(part in path for part in _LIBRARY_PARTS)


def _own(path: str) -> bool:
    return path in _OWN_FILES or path.startswith(_OWN_DIRS) or path + os.sep in _OWN_DIRS


def _kind(filename: str) -> str:
    """'own', 'user' or 'library' for a code object's file name."""
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>, generated code
        return "library"
    path = os.path.realpath(filename)
    if path in _user_paths or any(path.startswith(p) for p in _user_paths if p.endswith(os.sep)):
        return "user"
    if _own(path):
        return "own"
    if path.startswith(_LIBRARY_DIRS) or any(part in path for part in _LIBRARY_PARTS):
        return "library"
    return "user"


def _chain(exc: BaseException):
    """exc, then the exceptions it was raised from or while handling, at most _CHAIN_LIMIT."""
    seen = set()
    while exc is not None and id(exc) not in seen and len(seen) < _CHAIN_LIMIT:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError, torch's OutOfMemoryError, TF's ResourceExhaustedError, or an allocator's message."""
    for e in _chain(exc):
        if _OOM_CLASSES & {c.__name__ for c in type(e).__mro__}:
            return True
        first = str(e)[:2000].lower()  # the allocators put it in the first lines; never format a huge message
        if any(m in first for m in _OOM_MESSAGES):  # any class: onnxruntime's errors derive from Exception only
            return True
    return False


def mentions_out_of_memory(text: str) -> bool:
    """Whether an error's text ("Type: message", as a child process or bench part reports it) is out of memory."""
    head = text[:2000]
    return any(name in head for name in _OOM_CLASSES) or any(m in head.lower() for m in _OOM_MESSAGES)


def _frames(exc: BaseException) -> list:
    """(filename, line, function) of each traceback frame, outermost first."""
    out, tb = [], exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        out.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return out


def _shown(filename: str) -> str:
    """The file relative to the working folder when it lies under it, else absolute."""
    rel = os.path.relpath(filename) if os.path.isabs(filename) else filename
    return rel if not rel.startswith("..") else filename


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text[:2000].strip().splitlines()[0][:300] if text.strip() else ""


def _fault_of(exc: BaseException) -> UserFault | None:
    """The user's frame that decides for this one exception, if it is the user's."""
    if isinstance(exc, SyntaxError) and exc.filename and _kind(exc.filename) == "user":
        return UserFault(_shown(exc.filename), exc.lineno or 0, "<module>", type(exc).__name__, exc.msg or "")
    decided = [f for f in _frames(exc) if _kind(f[0]) != "library"]
    if not decided or _kind(decided[-1][0]) != "user":
        return None
    filename, line, function = decided[-1]
    return UserFault(_shown(filename), line, function, type(exc).__name__, _first_line(exc))


def user_fault(exc: BaseException) -> UserFault | None:
    """The user's frame and exception when `exc` is the user's error (rule 2 above), else None."""
    for e in _chain(exc):
        fault = _fault_of(e)
        if fault is not None:
            return fault
        frames = _frames(e)
        if not frames or _kind(frames[-1][0]) != "library":  # raised by this project: its own error
            return None
    return None


def describe(exc: BaseException) -> str:
    """'Type: first line of the message', bounded in length."""
    first = _first_line(exc)
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
