"""`iberlite decide` as a library call: decide from stored results, keep the decision in the
database, and write the policy (and the decisions as JSON) only where the caller asks."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from iberlite.decide.prices import CostProfile, load_profile
from iberlite.decide.router import Policy, Route
from iberlite.decide.routing import Decision, decide, load_pairs
from iberlite.device.energy import assumed_watts
from iberlite.errors import UserError
from iberlite.models.adapters import Adapter, read_record
from iberlite.models.names import parse_model_name, resolve_model
from iberlite.store import Store, cost_key, json_safe


@dataclass(frozen=True)
class DecisionOutcome:
    """A decision made and stored: its rows, the profile it was priced with, and its id."""

    decisions: tuple[Decision, ...]
    profile: CostProfile
    decision_id: int
    training: Adapter | None = None  # the device model's adapter, whose training is a one-off cost
    training_cost: float = 0.0


def adapter_of(model: str) -> Adapter | None:
    """The adapter record of an adapted model name (`MODEL+ADAPTER`), else None."""
    if parse_model_name(model).adapter is None:
        return None
    adapter = resolve_model(model).adapter
    return read_record(adapter) if adapter is not None else None


def decide_and_store(*, device: str, cloud: str, profile_path: Path, min_accuracy: float, db: Path,
                     seed: int, command: str, device_class: str | None = None,
                     policy_out: Path | None = None, json_out: Path | None = None) -> DecisionOutcome:
    """Decide device, cloud or cascade per task and language, store the decision in `db`, and
    write the policy to `policy_out` and the decisions to `json_out` when given."""
    if not 0.0 <= min_accuracy <= 1.0:
        raise UserError(f"--min-accuracy must be between 0 and 1, not {min_accuracy}.", 2)
    profile = load_profile(profile_path)
    training = adapter_of(device)
    training_cost = (profile.device_time_cost(training.seconds, training.cpu_seconds, assumed_watts())
                     if training else 0.0)
    if training:  # training the adapter is a one-off cost of answering on the device
        profile = profile.with_one_off(training_cost)
    pairs = load_pairs(db, device, cloud, device_class)
    decisions = decide(pairs, profile, min_accuracy, seed=seed)
    if not decisions:
        raise UserError(f"{device} and {cloud} share too few items per task to split them in half.", 2)
    with Store(db) as store:
        decision_id = store.add_decision(command, cost_key(device, device_class), cloud, min_accuracy,
                                         profile.to_dict(), [d.to_dict() for d in decisions])
    if policy_out is not None:
        Policy(
            device_model=device, cloud_model=cloud, min_accuracy=min_accuracy,
            routes=tuple(Route(d.task, d.lang, d.output, d.chosen.action, d.chosen.threshold)
                         for d in decisions),
            created=time.strftime("%Y-%m-%dT%H:%M:%S"), decision_id=decision_id,
        ).save(policy_out)
    if json_out:
        json_out.write_text(json.dumps(json_safe([d.to_dict() for d in decisions]), indent=2) + "\n")
    return DecisionOutcome(tuple(decisions), profile, decision_id, training, training_cost)
