"""Several device candidates against one cloud model: a device tier is a model *and* how it is
prompted (zero-shot, k fixed shots, an adapter: `smollm2-135m`, `smollm2-135m:5shot-fixed`,
`smollm2-135m+bec_eu`).

Each candidate is decided against the cloud exactly as one device model is (`routing.decide`),
on the items every candidate of that (task, language) answered, so their numbers are comparable,
with its adapter's training (and the labels it was trained on) as a one-off in its own device
costs. Per (task, language) the winner is the cheapest candidate whose choice meets the target
on the calibration half; ties go to the higher calibration accuracy, then to the candidate
named first. When none meets it, the most accurate wins (then the cheaper, then the first
named). A candidate with per-item shots is compared but never wins: lm-eval draws those shots
document after document in the evaluated order, so a new request cannot be given the shots
its number was measured with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from iberlite.decide.labelling import LabellingCost
from iberlite.decide.prices import CostProfile, money
from iberlite.decide.routing import (
    ZERO_SHOT,
    CandidateChoice,
    Decision,
    Option,
    PairedItem,
    decide,
    device_class_of,
    evals_by_task,
    pairs_from_store,
)
from iberlite.models.adapters import Adapter
from iberlite.models.names import Candidate, adapter_base
from iberlite.store import Store

Key = tuple[str, str, str]
PER_ITEM_NOTE = ("{names} {verb} compared but cannot be chosen: lm-eval's per-item shots are drawn "
                 "document after document in the evaluated order, so a new request cannot be given "
                 "the same shots; evaluate with --fewshot-mode fixed to deploy shots.")


@dataclass(frozen=True)
class CandidateSetup:
    """A candidate with what it is decided on: its paired items, its shots as evaluated per
    task, and the profile that carries its adapter's one-off training (and labelling) cost."""

    candidate: Candidate
    pairs: dict[Key, list[PairedItem]]
    plans: dict[Key, dict]  # per task: the evaluation's stored `fewshot` info (k > 0 only)
    profile: CostProfile
    training: Adapter | None = None
    training_cost: float = 0.0
    labelling: LabellingCost | None = None  # the adapter was trained on labels: what they cost

    @property
    def deployable(self) -> bool:
        """A policy can prompt new requests as this candidate was evaluated."""
        return self.candidate.mode != "per-item"


def load_setup(store: Store, candidate: Candidate, cloud: str, profile: CostProfile,
               device_class: str | None, training: Adapter | None, training_cost: float,
               labelling: LabellingCost | None = None) -> CandidateSetup:
    """A candidate's paired items from an open store (its own shots only; the cloud zero-shot).
    The labels' cost joins the training's one-off, spread with it over `amortize_months`."""
    shots = (candidate.k, candidate.mode) if candidate.fewshot else ZERO_SHOT
    pairs = pairs_from_store(store, candidate.model, cloud, device_class, shots)
    plans = {}
    if candidate.fewshot:
        plans = {key: dict(ev.task_info["fewshot"]) for key, ev in
                 evals_by_task(store, candidate.model, device_class_of(store, candidate.model, device_class), shots).items()}
    one_off = training_cost + (labelling.cost if labelling else 0.0)
    return CandidateSetup(candidate, pairs, plans, profile.with_one_off(one_off) if training else profile,
                          training, training_cost, labelling)


def base_model(candidate: Candidate) -> str:
    """The model a candidate improves on: its model without the adapter."""
    return adapter_base(candidate.model) or candidate.model


def is_base(candidate: Candidate) -> bool:
    """A zero-shot model without an adapter: what adapters and shots are compared against."""
    return not candidate.fewshot and base_model(candidate) == candidate.model


def compare(setups: Sequence[CandidateSetup], min_accuracy: float, seed: int) -> list[Decision]:
    """One decision per (task, language): the winning candidate's (see the module docstring),
    carrying every candidate's choice and the moves toward the device. One candidate: its
    decisions exactly as `routing.decide` makes them."""
    if len(setups) == 1:
        s = setups[0]
        return [replace(d, candidate=s.candidate.raw, fewshot=s.plans.get((d.task, d.lang, d.output)),
                        labelling=s.labelling)
                for d in decide(s.pairs, s.profile, min_accuracy, seed=seed)]
    common: dict[Key, set[str]] = {}
    for s in setups:
        for key, items in s.pairs.items():
            ids = {it.doc_id for it in items}
            common[key] = common[key] & ids if key in common else ids
    decided = []
    for s in setups:
        shared = {key: [it for it in items if it.doc_id in common[key]] for key, items in s.pairs.items()}
        decided.append({(d.task, d.lang, d.output): d for d in decide(shared, s.profile, min_accuracy, seed=seed)})
    out = []
    for key in sorted(common):
        entries = [(s, by_key[key]) for s, by_key in zip(setups, decided) if key in by_key]
        eligible = [(s, d) for s, d in entries if s.deployable]
        if not eligible:
            continue
        met = [(s, d) for s, d in eligible if d.meets_target]
        if met:
            win_s, win_d = min(met, key=lambda e: (e[1].chosen.monthly_cost, -e[1].chosen.calib_accuracy))
        else:
            win_s, win_d = max(eligible, key=lambda e: (e[1].chosen.calib_accuracy, -e[1].chosen.monthly_cost))
        choices = tuple(CandidateChoice(s.candidate.raw, d.chosen, d.meets_target, d.device.accuracy, s.deployable)
                        for s, d in entries)
        out.append(replace(win_d, candidate=win_s.candidate.raw, fewshot=win_s.plans.get(key),
                           candidates=choices, moves=tuple(_moves(entries)), labelling=win_s.labelling))
    return out


def _where(o: Option) -> str:
    if o.action in ("device", "cloud"):
        return o.action
    return f"a cascade ({o.cloud_share:.0%} cloud)"


def _moves(entries: Sequence[tuple[CandidateSetup, Decision]]) -> list[str]:
    """A sentence per candidate whose choice, meeting the target, sends less to the cloud than
    its base model's zero-shot choice does, with the monthly saving (net of training and labels)."""
    bases = {s.candidate.model: d for s, d in entries if is_base(s.candidate)}
    out = []
    for s, d in entries:
        base = bases.get(base_model(s.candidate))
        if is_base(s.candidate) or base is None or not s.deployable or not d.meets_target:
            continue
        if base.chosen.action == "device" or d.chosen.cloud_share >= base.chosen.cloud_share:
            continue
        cur, p = s.profile.currency, s.profile
        saving = base.chosen.monthly_cost - d.chosen.monthly_cost
        amount = (f"saves {money(saving, cur)}/month" if saving >= 0
                  else f"costs {money(-saving, cur)}/month more")
        after = _after(s, cur, p.amortize_months) if s.training else ""
        out.append(f"{s.candidate.raw} moves {d.task} ({d.lang}) from {_where(base.chosen)} to "
                   f"{_where(d.chosen)}: {amount}{after}.")
    return out


def _after(s: CandidateSetup, cur: str, months: float) -> str:
    """What the saving is net of: the training, and the labels when the adapter was trained on
    some (or that they are not in it, when their cost is unknown)."""
    lab = s.labelling
    if lab is None:
        return f" after training ({s.training_cost:.3g} {cur} one-off over {months:g} months)"
    if not lab.known:
        return (f" after training ({s.training_cost:.3g} {cur} one-off over {months:g} months), "
                f"not counting its {lab.labels} labels of unknown cost")
    return f" after training ({s.training_cost:.3g} {cur}) and {lab.phrase()}, one-off over {months:g} months"


def comparison_notes(candidates: Sequence[Candidate], decisions: Sequence[Decision]) -> tuple[str, ...]:
    """What the comparison of several candidates says besides the table: the moves toward the
    device (or that there are none), and which candidates could not be judged or chosen."""
    if len(candidates) < 2:
        return ()
    notes = [m for d in decisions for m in d.moves]
    if not notes:
        notes.append(NO_MOVES)
    models = {c.model for c in candidates if is_base(c)}
    orphans = [c.raw for c in candidates if not is_base(c) and base_model(c) not in models]
    if orphans:
        notes.append(f"No moves are stated for {', '.join(orphans)}: add the base model's zero-shot "
                     "candidate (--device BASE) to compare against it.")
    per_item = [c.raw for c in candidates if c.mode == "per-item"]
    if per_item:
        notes.append(PER_ITEM_NOTE.format(names=", ".join(per_item), verb="is" if len(per_item) == 1 else "are"))
    return tuple(notes)


NO_MOVES = ("No adapted or few-shot candidate moves a task and language toward the device: none "
            "meets the target with a smaller cloud share than its base model's zero-shot choice.")


def routing_moves(decisions: Sequence[Decision]) -> tuple[str, ...]:
    """The moves sentences of a stored decision for the report: those it made, or that there
    were none when several candidates were compared (nothing when only one was)."""
    if not any(len(d.candidates) > 1 for d in decisions):
        return ()
    return tuple(m for d in decisions for m in d.moves) or (NO_MOVES,)


def routing_labelling(decisions: Sequence[Decision]) -> tuple[str, ...]:
    """For the report: per (task, language) whose candidate was trained on labels, what the
    labels cost against what its choice then saves per month over the cloud alone (net of the
    one-offs' monthly share, as every monthly cost is); nothing for decisions without labels."""
    out = []
    for d in decisions:
        lab = d.labelling
        if lab is None:
            continue
        name = d.candidate or "the device model"
        if not lab.known:
            out.append(f"{d.task} ({d.lang}): {lab.sentence(name)}")
            continue
        cur = lab.currency
        cost = (f"{d.task} ({d.lang}): the {lab.labels} labels {name} was trained on cost {money(lab.cost, cur)} once "
                f"({money(lab.monthly, cur)}/month over {lab.amortize_months:g} months)")
        if d.chosen.action == "cloud":
            out.append(f"{cost}; the cloud alone is chosen there, so the device saves nothing to set against them.")
            continue
        saving = d.cloud.monthly_cost - d.chosen.monthly_cost
        versus = (f"saves {money(saving, cur)}/month against" if saving >= 0
                  else f"costs {money(-saving, cur)}/month more than")
        how = "on the device" if d.chosen.action == "device" else f"with {_where(d.chosen)}"
        out.append(f"{cost}; answering {how} then {versus} the cloud alone, training and labels included.")
    return tuple(out)
