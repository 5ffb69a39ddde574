"""Exceptions of the pxdiff package, one class per libpxdiff error code (include/pxdiff.h).

Every class derives from PxdiffError (itself a RuntimeError, as before the split), and also
from the built-in exception a caller would catch for that kind of failure:

    code               class                      also a
    PX_ERR_IO          PxdiffIOError              OSError (FileNotFoundError when the file is missing)
    PX_ERR_FORMAT      PxdiffFormatError          ValueError
    PX_ERR_WEIGHTS     PxdiffWeightsError         ValueError
    PX_ERR_INPUT       PxdiffInputError           ValueError  (shapes, dtypes, values)
    PX_ERR_NOMEM       PxdiffMemoryError          MemoryError
    PX_ERR_BACKEND     PxdiffBackendError         (the engine or its device failed: its own class)
    PX_ERR_CANCELLED   PxdiffCancelledError       (a progress callback asked to stop)

`check(rc)` turns a libpxdiff return code into the matching exception with the engine's
one-line message (px_last_error()); it is the package's only copy of that helper.
"""
import errno
import os

PX_OK = 0
PX_ERR_IO = -1
PX_ERR_FORMAT = -2
PX_ERR_WEIGHTS = -3
PX_ERR_INPUT = -4
PX_ERR_NOMEM = -5
PX_ERR_BACKEND = -6
PX_ERR_CANCELLED = -7

__all__ = ["PxdiffError", "PxdiffIOError", "PxdiffFileNotFoundError", "PxdiffFormatError",
           "PxdiffWeightsError", "PxdiffInputError", "PxdiffMemoryError", "PxdiffBackendError",
           "PxdiffCancelledError", "error_for", "check"]


class PxdiffError(RuntimeError):
    """A failure reported by the engine (or found by the binding), with its one-line message.
    `code` is the libpxdiff error code (None when the binding itself found the problem)."""

    code = None

    def __init__(self, message="", code=None):
        # OSError subclasses interpret several positional arguments; keep exactly one.
        super().__init__(message)
        if code is not None:
            self.code = code

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class PxdiffIOError(PxdiffError, OSError):
    """A file could not be opened, read or written (PX_ERR_IO)."""
    code = PX_ERR_IO


class PxdiffFileNotFoundError(PxdiffIOError, FileNotFoundError):
    """PX_ERR_IO for a file that does not exist."""
    code = PX_ERR_IO


class PxdiffFormatError(PxdiffError, ValueError):
    """A file's content is malformed or of a foreign kind (PX_ERR_FORMAT)."""
    code = PX_ERR_FORMAT


class PxdiffWeightsError(PxdiffError, ValueError):
    """A tensor the model needs is missing or mis-shaped (PX_ERR_WEIGHTS)."""
    code = PX_ERR_WEIGHTS


class PxdiffInputError(PxdiffError, ValueError):
    """The caller's arguments or features are invalid: shapes, dtypes, values (PX_ERR_INPUT)."""
    code = PX_ERR_INPUT


class PxdiffMemoryError(PxdiffError, MemoryError):
    """An allocation failed (PX_ERR_NOMEM)."""
    code = PX_ERR_NOMEM


class PxdiffBackendError(PxdiffError):
    """The requested backend is unavailable or the engine failed on it (PX_ERR_BACKEND)."""
    code = PX_ERR_BACKEND


class PxdiffCancelledError(PxdiffError):
    """A progress callback asked to stop (PX_ERR_CANCELLED)."""
    code = PX_ERR_CANCELLED


_BY_CODE = {
    PX_ERR_IO: PxdiffIOError,
    PX_ERR_FORMAT: PxdiffFormatError,
    PX_ERR_WEIGHTS: PxdiffWeightsError,
    PX_ERR_INPUT: PxdiffInputError,
    PX_ERR_NOMEM: PxdiffMemoryError,
    PX_ERR_BACKEND: PxdiffBackendError,
    PX_ERR_CANCELLED: PxdiffCancelledError,
}

_ENOENT_TEXT = os.strerror(errno.ENOENT)  # "No such file or directory"


def error_for(rc, message, path=None):
    """The exception for libpxdiff code rc with this message. PX_ERR_IO becomes a
    FileNotFoundError when the message says so (strerror(ENOENT)) or when `path`, the file
    the call was given, does not exist."""
    cls = _BY_CODE.get(rc, PxdiffError)
    if cls is PxdiffIOError and (_ENOENT_TEXT in message or (path is not None and not os.path.exists(path))):
        cls = PxdiffFileNotFoundError
    e = cls(message or f"libpxdiff error code {rc}", rc)
    if isinstance(e, OSError) and path is not None:
        e.filename = os.fspath(path)
        if cls is PxdiffFileNotFoundError:
            e.errno = errno.ENOENT
    return e


def check(rc, lib=None, path=None):
    """rc when it is PX_OK, else raise the exception of its code with the
    engine's message. lib: the ctypes library to ask for px_last_error (default: pxdiff's);
    path: the file the call was given, if any (for FileNotFoundError)."""
    if not rc:
        return rc
    if lib is None:
        from ._lib import lib
    msg = lib.px_last_error()
    msg = msg.decode("utf-8", "replace") if msg else ""
    raise error_for(rc, msg, path)
