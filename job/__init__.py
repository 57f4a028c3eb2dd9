"""vocabmap: maps of a transformer model's whole token-embedding space."""

__version__ = "0.1.0"
