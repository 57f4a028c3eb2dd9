"""The one base class of errors a user can fix (bad config, unreadable model, missing corpus).

The command line catches :class:`VocabmapError` and prints its message as one line,
``vocabmap: error: <what is wrong and what to do>``, with exit code 2; ``--debug`` adds the
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class VocabmapError(Exception):
    """Base of every user-fixable error; the message names what is wrong and the fix."""
