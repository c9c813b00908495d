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
from iberlite.errors import UserError
from iberlite.store import Store, cost_key, json_safe


@dataclass(frozen=True)
class DecisionOutcome:
    """A decision made and stored: its rows, the profile it was priced with, and its id."""

    decisions: tuple[Decision, ...]
    profile: CostProfile
    decision_id: int


def decide_and_store(*, device: str, cloud: str, profile_path: Path, min_accuracy: float, db: Path,
                     seed: int, command: str, device_class: str | None = None,
                     policy_out: Path | None = None, json_out: Path | None = None) -> DecisionOutcome:
    """Decide device, cloud or cascade per task and language, store the decision in `db`, and
    write the policy to `policy_out` and the decisions to `json_out` when given."""
    if not 0.0 <= min_accuracy <= 1.0:
        raise UserError(f"--min-accuracy must be between 0 and 1, not {min_accuracy}.", 2)
    profile = load_profile(profile_path)
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
    return DecisionOutcome(tuple(decisions), profile, decision_id)
