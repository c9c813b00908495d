"""Language identification of model outputs, for the ``lang_ok`` metric.

Small models often answer a Basque or Galician prompt in Spanish (or echo the English source of
a translation). BLEU/chrF hide that, so every generation task also reports ``lang_ok``: the share
of outputs that a language identifier assigns to the task's ``target_lang``.

The identifier is langid.py 1.1.6 (it ships its own model, no download), restricted to the six
languages iberlite evaluates, so that it answers "which of the languages in play is this?" and
never an unrelated label (unrestricted, langid 1.1.6 labelled 11 of the 6072 FLORES devtest
sentences of these languages as e.g. Aragonese, Javanese or Esperanto). Other candidates were
rejected: lingua has no Galician, pycld2 missed Catalan.

The identifier is itself imperfect, worst on Galician (confused with Spanish and Portuguese) and
on short text. :func:`measure_accuracy` measures its per-language accuracy on FLORES-200 devtest,
so a report can say how far ``lang_ok`` can be trusted; ``benchmarks/langid_accuracy.py`` prints
the table with the confusions, and ``docs/language_id.md`` records the measured numbers.
"""

from __future__ import annotations

import threading
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

from iberlite.langs import LANGS as _LANGS

__all__ = [
    "LANGS",
    "FLORES_FILES",
    "LanguageIdentifier",
    "lang_ok",
    "identifier_signature",
    "load_flores",
    "first_words",
    "flores_predictions",
    "measure_accuracy",
]

#: Languages iberlite evaluates (:mod:`iberlite.langs`); the identifier can only answer one of these.
LANGS: tuple[str, ...] = _LANGS

#: FLORES-200 file stem of each language (files are ``flores200/{stem}.{split}``).
FLORES_FILES: dict[str, str] = {
    "es": "spa_Latn",
    "ca": "cat_Latn",
    "eu": "eus_Latn",
    "gl": "glg_Latn",
    "pt": "por_Latn",
    "en": "eng_Latn",
}

# One restricted langid model per process. Decoding langid's embedded model takes about a second,
# so it is built on first use and shared by every LanguageIdentifier. After construction the model
# is only read (classify() allocates its own arrays), so sharing it across threads is safe; the
# lock only makes sure two threads racing on first use do not both build it.
_MODEL: Any = None
_MODEL_LOCK = threading.Lock()


def _restricted_model() -> Any:
    """Return the process-wide langid model restricted to :data:`LANGS`, building it once.

    We build our own ``langid.langid.LanguageIdentifier`` instead of calling
    ``langid.set_languages``: that function mutates langid's module-global identifier, which
    would silently change the behaviour of any other code in the process that uses langid.
    """
    global _MODEL
    model = _MODEL
    if model is None:
        with _MODEL_LOCK:
            model = _MODEL
            if model is None:
                from langid import langid as _langid

                model = _langid.LanguageIdentifier.from_modelstring(_langid.model, norm_probs=True)
                model.set_languages(list(LANGS))
                _MODEL = model
    return model


class LanguageIdentifier:
    """Identify which of :data:`LANGS` a text is written in.

    Instances are cheap: they all share one lazily built model (see :func:`_restricted_model`),
    so creating one per task or per thread costs nothing after the first identification.
    """

    langs: tuple[str, ...] = LANGS

    def identify(self, text: str | None) -> str | None:
        """Return the language code of ``text``, or None if it is empty or whitespace only.

        None rather than a guess: langid returns its prior-favoured language for empty input,
        which would make an empty answer look like a (wrong or right) language.
        """
        if text is None or not text.strip():
            return None
        lang, _prob = _restricted_model().classify(text)
        return lang

    def identify_many(self, texts: Iterable[str | None]) -> list[str | None]:
        """Identify each text in order; see :meth:`identify`."""
        return [self.identify(t) for t in texts]


def lang_ok(outputs: Sequence[str | None], target: str) -> list[bool]:
    """Per output, whether it is identified as ``target``; empty output is never ok.

    Raises ValueError if ``target`` is not one of :data:`LANGS`: the identifier can never
    answer another language, so every output would silently count as wrong.
    """
    if target not in LANGS:
        raise ValueError(f"target language {target!r} is not one of {', '.join(LANGS)}")
    return [lang == target for lang in LanguageIdentifier().identify_many(outputs)]


def identifier_signature() -> str:
    """Identify the identifier, e.g. ``"langid.py 1.1.6|langs:ca,en,es,eu,gl,pt"``.

    Stored next to ``lang_ok`` scores so that numbers computed with a different identifier or
    language set are never compared as if they were the same metric.
    """
    try:
        version = metadata.version("langid")
    except metadata.PackageNotFoundError:  # pragma: no cover - langid is a hard dependency
        version = "unknown"
    return f"langid.py {version}|langs:{','.join(sorted(LANGS))}"


def _flores_path(data_dir: Path, lang: str, split: str) -> Path:
    return Path(data_dir) / "flores200" / f"{FLORES_FILES[lang]}.{split}"


def load_flores(data_dir: Path, lang: str, n: int | None = None, split: str = "devtest") -> list[str]:
    """Return the first ``n`` (default all) non-empty sentences of one FLORES-200 file.

    Raises FileNotFoundError naming the missing file and the data dir.
    """
    if lang not in FLORES_FILES:
        raise ValueError(f"unknown language {lang!r}; expected one of {', '.join(LANGS)}")
    if n is not None and n < 1:
        raise ValueError(f"n must be a positive number of sentences, got {n}")
    path = _flores_path(data_dir, lang, split)
    if not path.is_file():
        raise FileNotFoundError(
            f"FLORES-200 file {path.relative_to(data_dir)} not found in data dir {data_dir}."
        )
    sentences: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if line.strip():
                sentences.append(line)
                if n is not None and len(sentences) >= n:
                    break
    if not sentences:
        raise ValueError(f"FLORES-200 file {path} contains no sentences.")
    return sentences


def first_words(text: str, k: int) -> str:
    """The first ``k`` whitespace-separated words of ``text`` (a stand-in for a short answer)."""
    return " ".join(text.split()[:k])


def flores_predictions(
    data_dir: Path,
    n: int | None = None,
    max_words: int | None = None,
    split: str = "devtest",
) -> dict[str, Counter]:
    """Per gold language, a Counter of what the identifier predicted for its FLORES sentences.

    ``max_words`` truncates each sentence to its first words first, to measure the identifier on
    text as short as a typical short generation. Every file is checked before any work starts, so
    a missing file fails fast.
    """
    data_dir = Path(data_dir)
    for lang in LANGS:  # fail before spending time on the languages that are present
        path = _flores_path(data_dir, lang, split)
        if not path.is_file():
            raise FileNotFoundError(
                f"FLORES-200 file {path.relative_to(data_dir)} not found in data dir {data_dir}."
            )
    ident = LanguageIdentifier()
    result: dict[str, Counter] = {}
    for lang in LANGS:
        sentences = load_flores(data_dir, lang, n, split)
        if max_words is not None:
            sentences = [first_words(s, max_words) for s in sentences]
        result[lang] = Counter(ident.identify_many(sentences))
    return result


def measure_accuracy(
    data_dir: Path, n: int | None = None, *, max_words: int | None = None
) -> dict[str, float]:
    """Per language, the share of FLORES-200 devtest sentences identified correctly.

    Reads ``flores200/{spa,cat,eus,glg,por,eng}_Latn.devtest`` under ``data_dir`` (one sentence
    per line), the first ``n`` sentences of each (default: all 1012). This is the identifier's
    own error rate: a ``lang_ok`` of 0.95 on Galician means little if the identifier only gets
    0.95 of real Galician right. Raises FileNotFoundError if a file is missing.
    """
    preds = flores_predictions(data_dir, n, max_words=max_words)
    return {lang: counts[lang] / sum(counts.values()) for lang, counts in preds.items()}
