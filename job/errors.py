"""The one base class of errors a user can fix (bad config, unreadable model, missing corpus).

The command line catches :class:`VocabmapError` and prints its message as one line,
``vocabmap: error: <what is wrong and what to do>``, with exit code 2; ``--debug`` adds the
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class VocabmapError(Exception):
    """Base of every user-fixable error; the message names what is wrong and the fix."""


class SourceError(VocabmapError, RuntimeError):
    """The model could not be found or read; the message says what to do."""


def require_torch(what: str) -> None:
    """Fail with the install line when torch, an optional extra, is missing (it is needed for
    .bin checkpoints and contextual embeddings; safetensors are read without it)."""
    try:
        import torch  # noqa: F401
    except ImportError as err:
        raise VocabmapError(f"{what} needs torch, which is not installed: pip install "
                            "'vocabmap[torch]' (a CPU-only build: pip install torch "
                            "--index-url https://download.pytorch.org/whl/cpu)") from err
