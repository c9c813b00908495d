"""The selection strategies' names and defaults, apart from their code (which needs numpy), so
the command line can list them without loading it."""

STRATEGIES = ("random", "margin", "entropy", "diverse", "mix")

DEFAULT_STRATEGY = "random"
"""The default until a measurement shows another beating random (docs/labelling.md)."""

NEAR_DUPLICATE = 0.9
"""TF-IDF cosine at or above which two rows are near-duplicates, never picked together."""
