"""`iberlite decide` as a library call: decide from stored results, keep the decision in the
database, and write the policy (and the decisions as JSON) only where the caller asks."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from iberlite.decide.candidates import CandidateSetup, compare, comparison_notes, load_setup
from iberlite.decide.labelling import LabellingCost, labelling_cost
from iberlite.decide.prices import CostProfile, load_profile
from iberlite.decide.router import Policy, Route
from iberlite.decide.routing import Decision, open_results
from iberlite.device.energy import assumed_watts
from iberlite.errors import UserError
from iberlite.models.adapters import Adapter, read_record
from iberlite.models.names import adapter_base, parse_candidate, resolve_model
from iberlite.store import Store, cost_key, json_safe
from iberlite.store.labels import LabelBook


@dataclass(frozen=True)
class DecisionOutcome:
    """A decision made and stored: its rows, the profile it was priced with, and its id."""

    decisions: tuple[Decision, ...]
    profile: CostProfile
    decision_id: int
    training: Adapter | None = None  # the (first) adapted candidate's adapter: its training is a one-off
    training_cost: float = 0.0
    setups: tuple[CandidateSetup, ...] = ()  # every device candidate, with its own training cost
    notes: tuple[str, ...] = ()  # the moves toward the device and what could not be chosen
    labelling: LabellingCost | None = None  # that adapter was trained on labels: what they cost


def adapter_of(model: str) -> Adapter | None:
    """The adapter record of an adapted model name (`MODEL+ADAPTER`), else None."""
    if adapter_base(model) is None:
        return None
    adapter = resolve_model(model).adapter
    return read_record(adapter) if adapter is not None else None


def decide_and_store(*, device: str | Sequence[str], cloud: str, profile_path: Path, min_accuracy: float,
                     db: Path, seed: int, command: str, device_class: str | None = None,
                     policy_out: Path | None = None, json_out: Path | None = None) -> DecisionOutcome:
    """Decide device, cloud or cascade per task and language, store the decision in `db`, and
    write the policy to `policy_out` and the decisions to `json_out` when given.

    `device` is one device candidate or several (`MODEL`, `MODEL+ADAPTER`, `MODEL:Kshot-fixed`,
    see `models.names.parse_candidate`); with several, each (task, language) goes to the best
    candidate (`decide.candidates`). An adapter trained on people's labels also carries their
    cost (`decide.labelling`), timed by the labelling page in `db`."""
    if not 0.0 <= min_accuracy <= 1.0:
        raise UserError(f"--min-accuracy must be between 0 and 1, not {min_accuracy}.", 2)
    base_profile = load_profile(profile_path)
    names = [device] if isinstance(device, str) else list(device)
    if not names:
        raise UserError("Name at least one --device model.", 2)
    candidates = [parse_candidate(n) for n in names]
    if len({c.raw for c in candidates}) < len(candidates):
        raise UserError(f"A device candidate is named twice: {', '.join(names)}.", 2)
    with open_results(Path(db)) as store:
        setups = []
        for c in candidates:
            training = adapter_of(c.model)
            cost = (base_profile.device_time_cost(training.seconds, training.cpu_seconds, assumed_watts())
                    if training else 0.0)
            timed = LabelBook(store).label_seconds(training.task) if training and training.labels else []
            labelling = labelling_cost(training, timed, base_profile)
            setup = load_setup(store, c, cloud, base_profile, device_class, training, cost, labelling)
            if not setup.pairs:
                raise UserError(f"{c.raw} and {cloud} have no items in common in {db}.", 2)
            setups.append(setup)
    decisions = compare(setups, min_accuracy, seed)
    if not decisions:
        raise UserError(f"{' and '.join(names)} and {cloud} share too few items per task to split them in "
                        "half.", 2)
    per_item = [d for d in decisions if d.fewshot and d.fewshot.get("mode") != "fixed"]
    if policy_out is not None and per_item:
        raise UserError(f"{per_item[0].candidate} cannot go into a policy: per-item shots are drawn in the "
                        "evaluated order, so a new request cannot be given them; evaluate with "
                        "--fewshot-mode fixed.", 2)
    first = setups[0]
    with Store(db) as store:
        device_label = ", ".join(s.candidate.raw for s in setups)  # one candidate: its name, as before
        decision_id = store.add_decision(command, cost_key(device_label, device_class), cloud,
                                         min_accuracy, first.profile.to_dict(), [d.to_dict() for d in decisions])
    if policy_out is not None:
        several = len(setups) > 1
        Policy(
            device_model=first.candidate.model, cloud_model=cloud, min_accuracy=min_accuracy,
            routes=tuple(Route(d.task, d.lang, d.output, d.chosen.action, d.chosen.threshold,
                               device_model=_model_of(d.candidate) if several else None, fewshot=d.fewshot)
                         for d in decisions),
            created=time.strftime("%Y-%m-%dT%H:%M:%S"), decision_id=decision_id,
        ).save(policy_out)
    if json_out:
        json_out.write_text(json.dumps(json_safe([d.to_dict() for d in decisions]), indent=2) + "\n")
    adapted = next((s for s in setups if s.training), None)
    return DecisionOutcome(tuple(decisions), first.profile, decision_id,
                           adapted.training if adapted else None, adapted.training_cost if adapted else 0.0,
                           tuple(setups), comparison_notes(candidates, decisions),
                           adapted.labelling if adapted else None)


def _model_of(candidate: str) -> str:
    return parse_candidate(candidate).model
