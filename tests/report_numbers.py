"""The number strings a rendered report shows, for comparing two renderings of one database."""

from __future__ import annotations

import re

_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?%?")


def number_strings(page: str) -> set[str]:
    """Every number as printed (``0.67``, ``[0.33, 1.00]`` gives two, ``1,234 ms`` gives
    ``1,234``), outside the page's own scripts (plotly.js, the table script) and timestamps
    (local time, so they depend on the machine)."""
    page = re.sub(r"<script>.*?</script>", "", page, flags=re.S)
    page = _TIMESTAMP.sub("", page)
    return set(_NUMBER.findall(page))
