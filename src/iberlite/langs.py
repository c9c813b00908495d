"""The languages iberlite evaluates, in the one order every table and chart uses.

Spanish is the reference of every language gap; English is evaluated as the control.
"""

from __future__ import annotations

LANGS: tuple[str, ...] = ("es", "ca", "eu", "gl", "pt", "en")
LANG_NAMES: dict[str, str] = {"es": "Spanish", "ca": "Catalan", "eu": "Basque", "gl": "Galician",
                              "pt": "Portuguese", "en": "English"}
REFERENCE_LANG = "es"


def lang_key(lang: str) -> tuple[int, str]:
    """Sort key putting languages in report order (Spanish first, English last, others after)."""
    return (LANGS.index(lang) if lang in LANGS else len(LANGS), lang)
