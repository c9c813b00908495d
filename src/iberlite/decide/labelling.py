"""The one-off cost of the labels an adapter was trained on (`iberlite adapt --labels`).

People's time is priced as the device's is: the labels the adapter's record counts, times the
median seconds a label took (as the labelling page timed them, in the database `decide`
reads, for the adapter's task; else the profile's `labelling.seconds_per_label`), at the
profile's `labelling.per_hour`. It is added to the training's one-off, so it is spread over
`amortize_months` as the training is, but kept as its own record so every table and sentence
can state it apart. When the time of a label or the price of an hour is unknown, the labels
cost 0 in the decision and one sentence says what to add to the profile.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from iberlite.decide.prices import CostProfile, money
from iberlite.models.adapters import Adapter


@dataclass(frozen=True)
class LabellingCost:
    """What the labels an adapter was trained on cost, and where each factor came from."""

    labels: int  # labels the adapter was trained on (its record's count)
    seconds_median: float | None  # seconds per label; None: unknown
    seconds_from: str  # "page" (median of the labels it timed), "profile" (its assumption), "" (unknown)
    timed: int  # labels of the task the page timed: the median's sample
    per_hour: float | None  # the profile's price of an hour of labelling; None: not priced
    cost: float  # in the profile's currency; 0 when unknown
    currency: str
    amortize_months: float

    @property
    def known(self) -> bool:
        """Both the time of a label and the price of an hour are known, so `cost` is a cost."""
        return self.seconds_median is not None and self.per_hour is not None

    @property
    def monthly(self) -> float:
        """The cost's share of every month it is spread over."""
        return self.cost / self.amortize_months

    def phrase(self) -> str:
        """`labelling 300 labels at a median 4.1 s each (6.83 EUR at 20.00 EUR/hour)`."""
        each = "a median" if self.seconds_from == "page" else "an assumed"
        return (f"labelling {self.labels} labels at {each} {self.seconds_median or 0.0:.1f} s each "
                f"({money(self.cost, self.currency)} at {money(self.per_hour or 0.0, self.currency)}/hour)")

    def sentence(self, model: str) -> str:
        """One sentence for `decide`'s notes: what the labels cost and how it was priced, or
        what the profile lacks to price them."""
        n = self.labels
        if self.known:
            how = (f"a median {self.seconds_median:.1f} s each ({self.timed} timed on the labelling page)"
                   if self.seconds_from == "page" else
                   f"{self.seconds_median:.1f} s each (the profile's labelling.seconds_per_label: the "
                   "labelling page timed none)")
            return (f"{model} was trained on {n} labels that took {how}: a one-off "
                    f"{money(self.cost, self.currency)} at {money(self.per_hour or 0.0, self.currency)}/hour, "
                    f"spread over {self.amortize_months:g} months as its training is.")
        if self.seconds_median is None and self.per_hour is None:
            return (f"{model} was trained on {n} labels of unknown labelling time and price: add a labelling "
                    "section (per_hour, seconds_per_label) to the profile to cost them.")
        if self.seconds_median is None:
            return (f"{model} was trained on {n} labels of unknown labelling time: add "
                    "labelling.seconds_per_label to the profile to cost them.")
        return (f"{model} was trained on {n} labels (a median {self.seconds_median:.1f} s each) with no "
                "price per labelling hour: add labelling.per_hour to the profile to cost them.")


def labelling_cost(adapter: Adapter | None, timed: Sequence[float], profile: CostProfile) -> LabellingCost | None:
    """The labelling cost of an adapter trained on people's labels, from the seconds the
    labelling page timed for its task (`LabelBook.label_seconds`); None for an adapter trained
    on a train split, or no adapter."""
    if adapter is None or not adapter.labels:
        return None
    seconds: float | None
    if timed:
        seconds, source = float(statistics.median(timed)), "page"
    elif profile.seconds_per_label is not None:
        seconds, source = profile.seconds_per_label, "profile"
    else:
        seconds, source = None, ""
    priced = seconds is not None and profile.labelling_per_hour is not None
    cost = profile.labelling_cost(adapter.labels, seconds) if priced and seconds is not None else 0.0
    return LabellingCost(adapter.labels, seconds, source, len(timed), profile.labelling_per_hour, cost,
                         profile.currency, profile.amortize_months)


def labelling_from_json(d: dict | None) -> LabellingCost | None:
    """A stored labelling cost read back (a decision stored before labels were costed has none)."""
    return LabellingCost(**d) if d else None
