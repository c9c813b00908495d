"""Which pool rows to label first: the selection strategies, as pure functions of the model's
choice log-probabilities and the rows' texts.

- `random`: a seeded shuffle, the control every other strategy is measured against.
- `margin`: the smallest gap between the two likeliest choices (small-text's BreakingTies).
- `entropy`: the flattest distribution over the choices.
- `diverse`: one row per cluster of the pool's texts (TF-IDF of character n-grams, k-means with
  as many clusters as rows wanted), the row nearest each cluster's centre.
- `mix`: the same clusters, the most uncertain (smallest margin) row of each: uncertain within
  diverse, so a batch is not a hundred copies of one confusing case.

Small models' probabilities are not calibrated: a model that leans to one choice gives every
row a confident-looking top choice. When every row has the same choices, the log-probabilities
are calibrated against the pool itself (each choice's mean over the pool is subtracted, a
contextual calibration that needs no labels), so a cold start with no labels is handled.
Near-duplicates (TF-IDF cosine at or above `NEAR_DUPLICATE`) are never picked together.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from iberlite.errors import UserError
from iberlite.label.defaults import DEFAULT_STRATEGY, NEAR_DUPLICATE, STRATEGIES


@dataclass(frozen=True)
class Candidate:
    """A pool row that may be picked: its id, its text and the model's choice scores."""

    row_hash: str
    text: str
    logprobs: tuple[float, ...]


@dataclass(frozen=True)
class Ranked:
    """A picked row: its place in the batch, the model's guess and the strategy's score
    (margin for margin and mix, entropy for entropy, distance to the centre for diverse)."""

    row_hash: str
    rank: int
    prediction: int
    score: float | None


def calibrated_probs(logprobs: Sequence[Sequence[float]]) -> list[np.ndarray]:
    """Choice probabilities per row; calibrated against the pool when all rows share their
    number of choices (rows with other counts are only normalized)."""
    rows = [np.where(np.isfinite(a), a, -1e9) for a in (np.asarray(lp, dtype=float) for lp in logprobs)]
    if len({len(r) for r in rows}) == 1:
        mean = np.mean(rows, axis=0)
        rows = [r - mean for r in rows]
    return [_softmax(r) for r in rows]


def _softmax(row: np.ndarray) -> np.ndarray:
    e = np.exp(row - row.max())
    return e / e.sum()


def margins(probs: Sequence[np.ndarray]) -> np.ndarray:
    """Top-1 minus top-2 probability per row (1.0 for a single choice)."""
    out = []
    for p in probs:
        s = np.sort(np.asarray(p, dtype=float))[::-1]
        out.append(s[0] - (s[1] if len(s) > 1 else 0.0))
    return np.asarray(out)


def entropies(probs: Sequence[np.ndarray]) -> np.ndarray:
    """Shannon entropy per row, in nats."""
    return np.asarray([float(-(np.asarray(p) * np.log(np.clip(p, 1e-12, 1))).sum()) for p in probs])


def _vectors(texts: Sequence[str]):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True,
                           min_df=1).fit_transform(texts)


def _clusters(vectors, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cluster label and distance to its centre per row."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, random_state=seed, n_init=1, max_iter=100).fit(vectors)
    dist = km.transform(vectors)[np.arange(vectors.shape[0]), km.labels_]
    return km.labels_, dist


def _sklearn_or_error() -> None:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise UserError("The diverse and mix strategies need scikit-learn: pip install 'iberlite[label]'.",
                        2) from None


def select(candidates: Sequence[Candidate], n: int, strategy: str = DEFAULT_STRATEGY,
           seed: int = 0) -> list[Ranked]:
    """Pick up to `n` rows by `strategy`, never two near-duplicates."""
    if strategy not in STRATEGIES:
        raise UserError(f"Unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}.", 2)
    if n < 1:
        raise UserError("--n must be at least 1.", 2)
    if not candidates:
        return []
    n = min(n, len(candidates))
    probs = calibrated_probs([c.logprobs for c in candidates])
    guess = [int(np.argmax(p)) for p in probs]
    margin = margins(probs)
    _sklearn_or_error()
    vectors = _vectors([c.text for c in candidates])
    score: np.ndarray | None
    if strategy == "random":
        order = list(range(len(candidates)))
        random.Random(seed).shuffle(order)
        score = None
    elif strategy == "margin":
        order, score = list(np.argsort(margin, kind="stable")), margin
    elif strategy == "entropy":
        ent = entropies(probs)
        order, score = list(np.argsort(-ent, kind="stable")), ent
    else:
        labels, dist = _clusters(vectors, n, seed)
        key = dist if strategy == "diverse" else margin
        order = _round_robin(labels, key)
        score = dist if strategy == "diverse" else margin
    picked = _without_near_duplicates(order, vectors, n)
    return [Ranked(candidates[i].row_hash, rank, guess[i], None if score is None else float(score[i]))
            for rank, i in enumerate(picked)]


def _round_robin(labels: np.ndarray, key: np.ndarray) -> list[int]:
    """Each cluster's best row (smallest key), then each cluster's second, and so on: a batch
    covers every cluster before it takes a second row from any."""
    by_cluster: dict[int, list[int]] = {}
    for i in np.argsort(key, kind="stable"):
        by_cluster.setdefault(int(labels[i]), []).append(int(i))
    queues = sorted(by_cluster.values(), key=lambda q: key[q[0]])
    out: list[int] = []
    depth = 0
    while len(out) < len(labels):
        out += [q[depth] for q in queues if depth < len(q)]
        depth += 1
    return out


def _without_near_duplicates(order: Sequence[int], vectors, n: int) -> list[int]:
    """The first `n` of `order`, skipping a row too similar to one already picked (TF-IDF rows are
    L2-normalized, so a dot product is the cosine)."""
    picked: list[int] = []
    for i in order:
        if picked:
            sims = (vectors[picked] @ vectors[i].T).toarray().ravel()
            if sims.max() >= NEAR_DUPLICATE:
                continue
        picked.append(int(i))
        if len(picked) == n:
            break
    return picked
