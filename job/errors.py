"""The one base class of errors a user can fix (bad config, unreadable model, missing corpus).

The command line catches :class:`VocabmapError` and prints its message as one line,
``vocabmap: error: <what is wrong and what to do>``, with exit code 2; ``--debug`` adds the
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os

# the causes whose fix is known: a full disk, a folder that cannot be written
_FULL = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


class VocabmapError(Exception):
    """Base of every user-fixable error; the message names what is wrong and the fix."""


class SourceError(VocabmapError, RuntimeError):
    """The model could not be found or read; the message says what to do."""


class FileError(VocabmapError, RuntimeError):
    """A file or folder cannot be created, read or written (a full disk, a read-only folder);
    the message names the path, the cause and the fix."""


def file_error(err: OSError, failed: str, fix: str = "",
               kind: type[FileError] = FileError) -> FileError:
    """The one user-facing error for a failed file-system call: ``failed`` (what could not
    be done, with its path), the cause in words, and the fix (``fix`` where the caller knows
    a better one, else the usual one for the cause). Raise it ``from err``, so that
    ``--debug`` shows the call that failed."""
    # the C library's words for the error number: pyarrow and others wrap them in their own
    cause = os.strerror(err.errno).lower() if err.errno else str(err) or type(err).__name__
    if err.errno in _FULL:
        usual = "free space or choose --out elsewhere"
    elif err.errno in _NOT_WRITABLE:
        usual = "choose --out elsewhere or make the folder writable"
    else:
        usual = ("check that the path exists and is writable and that its disk has free "
                 "space")
    return kind(f"{failed}: {cause}; {fix or usual}")


def require_torch(what: str) -> None:
    """Fail with the install line when torch, an optional extra, is missing (it is needed for
    .bin checkpoints and contextual embeddings; safetensors are read without it)."""
    try:
        import torch  # noqa: F401
    except ImportError as err:
        raise VocabmapError(f"{what} needs torch, which is not installed: pip install "
                            "'vocabmap[torch]' (a CPU-only build: pip install torch "
                            "--index-url https://download.pytorch.org/whl/cpu)") from err
