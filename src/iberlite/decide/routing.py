"""Device, cloud or cascade, per (task, language), from stored items only (no re-run).

For a device model D and a cloud model C scored on the same items: each device item has a
confidence (multiple choice: top-1 minus top-2 probability after a softmax over the choice
logprobs; generation: mean token logprob). The cascade answers on the device when
confidence >= t and asks the cloud otherwise (the device has already run, so an escalated
request pays both and waits for both). Items are split in two halves by a seeded hash of
their doc id: the threshold and the recommendation are chosen on the calibration half and
reported on the test half, so no number is judged on the items it was fitted to.

Item score: 1/0 for a correct/incorrect answer; for translations (no single right answer)
the sentence chrF / 100, so a cascade's score is the mean over its items.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from iberlite.analysis.device_cost import item_energy_j
from iberlite.analysis.fewshot import shots_of
from iberlite.decide.labelling import LabellingCost, labelling_from_json
from iberlite.decide.prices import CostProfile
from iberlite.errors import UserError
from iberlite.scoring import metrics
from iberlite.store import EvalRecord, Store, cost_key


@dataclass(frozen=True)
class PairedItem:
    """One item answered by both models, with what each answer cost."""

    doc_id: str
    device_score: float
    cloud_score: float
    confidence: float
    device_ms: float
    cloud_ms: float
    device_energy_j: float
    cloud_input_tokens: float
    cloud_output_tokens: float


@dataclass(frozen=True)
class CurvePoint:
    """The cascade at one threshold, on one set of items."""

    threshold: float
    accuracy: float
    cloud_share: float
    cost_per_1k: float
    p50_ms: float
    p95_ms: float
    n: int


@dataclass(frozen=True)
class Option:
    """One policy for a (task, language), judged on the test half."""

    action: str
    threshold: float | None
    calib_accuracy: float
    accuracy: float
    ci_low: float
    ci_high: float
    cloud_share: float
    monthly_cost: float
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True)
class CandidateChoice:
    """What one device candidate (a model and its prompting) would do for a (task, language):
    its own best option against the cloud, on the items every candidate answered."""

    candidate: str
    chosen: Option
    meets_target: bool
    device_accuracy: float
    deployable: bool  # a policy can prompt new requests as it was evaluated (not per-item shots)


@dataclass(frozen=True)
class Decision:
    """The recommendation for one (task, language) and everything it was chosen against."""

    task: str
    lang: str
    output: str
    n_calib: int
    n_test: int
    volume: int
    chosen: Option
    meets_target: bool
    device: Option
    cloud: Option
    cascade: Option | None
    rule: Option
    break_even_volume: float | None  # requests/month above which the device is cheaper
    curve: tuple[CurvePoint, ...]  # test half
    candidate: str = ""  # the device candidate these options are of (the winner among several)
    fewshot: dict | None = None  # its shots as evaluated (k, mode, sampler, seed, pool_hash)
    candidates: tuple[CandidateChoice, ...] = ()  # every candidate compared, when several were
    moves: tuple[str, ...] = ()  # "X moves T (L) from cloud to device: saves ..." sentences
    labelling: LabellingCost | None = None  # the candidate's adapter was trained on labels: what they cost

    def to_dict(self) -> dict:
        """JSON-ready form (as `iberlite decide` stores it)."""
        return asdict(self)


def decision_from_json(d: dict) -> Decision:
    """A stored decision read back (`Store.latest_decision`). Infinite thresholds were stored
    as null and come back as None (the curve's all-device and all-cloud ends)."""
    def option(o: dict | None) -> Option | None:
        return None if o is None else Option(**o)

    curve = tuple(CurvePoint(**p) for p in d.get("curve", ()))
    return Decision(
        task=d["task"], lang=d["lang"], output=d["output"], n_calib=d["n_calib"], n_test=d["n_test"],
        volume=d["volume"], chosen=Option(**d["chosen"]), meets_target=d["meets_target"],
        device=Option(**d["device"]), cloud=Option(**d["cloud"]), cascade=option(d.get("cascade")),
        rule=Option(**d["rule"]), break_even_volume=d.get("break_even_volume"), curve=curve,
        candidate=d.get("candidate", ""), fewshot=d.get("fewshot"),
        candidates=tuple(CandidateChoice(**{**c, "chosen": Option(**c["chosen"])})
                         for c in d.get("candidates", ())),
        moves=tuple(d.get("moves", ())), labelling=labelling_from_json(d.get("labelling")),
    )


# -- loading --------------------------------------------------------------------------------


def _item_energy(store: Store, model: str, device_class: str | None) -> dict[tuple[int | None, str, str], float]:
    """Energy per (run, eval key, doc id) of the model's items (of one device class): the run's
    measured (or estimated) energy for the model, shared by wall time, as the device cost table does."""
    key_of_cost = cost_key(model, device_class)
    costs = {r.id: r.costs.get(key_of_cost) for r in store.runs()}
    items = [(ev.eval_key, it) for ev in store.evals() if ev.model == model and ev.device_class == device_class
             for it in store.items(ev.eval_key)]
    wall: dict[int | None, float] = defaultdict(float)
    for _, it in items:
        wall[it.run_id] += it.wall_ms or 0.0
    shares = {(it.run_id, key, it.doc_id): item_energy_j(costs.get(it.run_id or 0), it.wall_ms, wall[it.run_id])
              for key, it in items}
    return {k: j for k, j in shares.items() if j is not None}


def _score(output: str, correct: bool | None, generated: str | None, gold: str) -> float:
    if correct is not None:
        return float(correct)
    if output == "generate":
        return metrics.sentence_chrf(generated or "", gold) / 100.0
    return 0.0


ZERO_SHOT = (0, "-")


def evals_by_task(store: Store, model: str, device_class: str | None = None,
                  shots: tuple[int, str] = ZERO_SHOT) -> dict[tuple[str, str, str], EvalRecord]:
    """Per (task, lang, output), the model's evaluation prompted with exactly `shots` (k, mode)
    that has the most stored items (the newest on a tie). A zero-shot and a k-shot evaluation
    never stand for each other: a task evaluated only with shots has no zero-shot entry."""
    counts = store.item_counts()
    chosen: dict[tuple[str, str, str], EvalRecord] = {}
    for ev in store.evals():
        n = counts.get(ev.eval_key, 0)
        if not n or ev.model != model or shots_of(ev.task_info) != shots:
            continue
        if device_class is not None and ev.device_class != device_class:
            continue
        key = (ev.task, ev.lang, ev.output)
        cur = chosen.get(key)
        if cur is None or (n, ev.created_at) > (counts[cur.eval_key], cur.created_at):
            chosen[key] = ev
    return chosen


def device_class_of(store: Store, model: str, device_class: str | None) -> str | None:
    """The device class whose items stand for the device model: the one asked for, else the only
    one stored. Figures from two kinds of device are never mixed: several classes and no choice
    is a user error naming them."""
    counts = store.item_counts()
    stored = {ev.device_class for ev in store.evals() if ev.model == model and counts.get(ev.eval_key)}
    if device_class is not None:
        if device_class not in stored:
            named = ", ".join(sorted(c for c in stored if c)) or "none"
            raise UserError(f"No stored items for {model!r} on device class {device_class!r} "
                            f"(classes stored: {named}).", 2)
        return device_class
    if len(stored) > 1:
        named = ", ".join(sorted(c or "(not pinned)" for c in stored))
        raise UserError(f"{model} was measured on several device classes ({named}): pick one with "
                        "--device-class.", 2)
    return next(iter(stored), None)


def open_results(db_path: Path) -> Store:
    """The results database, read-only; a missing or unreadable one is a user error (exit 2)."""
    if not Path(db_path).is_file():
        raise UserError(f"No results database at {db_path}; run `iberlite run` first.", 2)
    try:
        return Store.open_readonly(db_path)
    except UserError as exc:
        raise UserError(str(exc), 2) from None


def load_pairs(db_path: Path, device: str, cloud: str, device_class: str | None = None,
               shots: tuple[int, str] = ZERO_SHOT) -> dict[tuple[str, str, str], list[PairedItem]]:
    """Items both models answered, per (task, lang, output), paired by doc id."""
    with open_results(db_path) as store:
        out = pairs_from_store(store, device, cloud, device_class, shots)
    if not out:
        raise UserError(f"{device} and {cloud} have no items in common in {db_path}.", 2)
    return out


def pairs_from_store(store: Store, device: str, cloud: str, device_class: str | None = None,
                     shots: tuple[int, str] = ZERO_SHOT) -> dict[tuple[str, str, str], list[PairedItem]]:
    """Items both models answered, per (task, lang, output), paired by doc id, from an open store;
    the device model's items are those of one device class (see `device_class_of`) prompted
    with `shots` (k, mode); the cloud model's are always zero-shot."""
    device_class = device_class_of(store, device, device_class)
    dev_evals = evals_by_task(store, device, device_class, shots)
    cloud_evals = evals_by_task(store, cloud)
    if not dev_evals:
        how = "" if shots == ZERO_SHOT else f" at {shots[0]} {shots[1]} shots"
        raise UserError(f"No stored items for device model {device!r}{how} in {store.path}.", 2)
    if not cloud_evals:
        raise UserError(f"No stored items for cloud model {cloud!r} in {store.path}.", 2)
    energy = _item_energy(store, device, device_class)
    out = {}
    for key in sorted(set(dev_evals) & set(cloud_evals)):
        dev_key = dev_evals[key].eval_key
        dev = {it.doc_id: it for it in store.items(dev_key)}
        cl = {it.doc_id: it for it in store.items(cloud_evals[key].eval_key)}
        pairs = []
        for doc in sorted(set(dev) & set(cl)):
            d, c = dev[doc], cl[doc]
            n_choices = len(c.choices) if c.choices else 0
            pairs.append(PairedItem(
                doc_id=doc,
                device_score=_score(key[2], d.correct, d.generated, d.gold),
                cloud_score=_score(key[2], c.correct, c.generated, c.gold),
                confidence=d.confidence if d.confidence is not None else -math.inf,
                device_ms=d.wall_ms or 0.0, cloud_ms=c.wall_ms or 0.0,
                device_energy_j=energy.get((d.run_id, dev_key, doc), 0.0),
                cloud_input_tokens=float(c.prompt_tokens or 0),
                cloud_output_tokens=float(c.gen_tokens if c.gen_tokens is not None else n_choices),
            ))
        if pairs:
            out[key] = pairs
    return out


# -- the split and the curve -----------------------------------------------------------------


def split_items(items: Sequence[PairedItem], seed: int) -> tuple[list[PairedItem], list[PairedItem]]:
    """(calibration, test): items ordered by a seeded hash of their doc id, cut in half."""
    ordered = sorted(items, key=lambda it: hashlib.sha256(f"{seed}:{it.doc_id}".encode()).hexdigest())
    half = len(ordered) // 2
    return ordered[:half], ordered[half:]


def request_cost(it: PairedItem, profile: CostProfile, escalate: bool, device_runs: bool = True) -> float:
    """Variable cost of one request: device electricity if the device ran, plus the cloud
    price if it was sent there (fixed device costs are added per month, not per request)."""
    cost = profile.device_energy_cost(it.device_energy_j) if device_runs else 0.0
    if escalate:
        cost += profile.cloud_cost(it.cloud_input_tokens, it.cloud_output_tokens)
    return cost


def _latency(it: PairedItem, profile: CostProfile, escalate: bool, device_runs: bool = True) -> float:
    ms = it.device_ms if device_runs else 0.0
    return ms + (it.cloud_ms + profile.cloud_latency_overhead_ms if escalate else 0.0)


def monthly(per_request: float, volume: int, uses_device: bool, profile: CostProfile) -> float:
    """Monthly cost at a volume: variable cost per request plus the device's fixed cost."""
    return per_request * volume + (profile.device_monthly_fixed if uses_device else 0.0)


def cascade_point(items: Sequence[PairedItem], t: float, profile: CostProfile, volume: int) -> CurvePoint:
    """Accuracy, cloud share, cost per 1k requests and latency of the cascade at threshold t."""
    esc = [it.confidence < t for it in items]
    scores = [it.cloud_score if e else it.device_score for it, e in zip(items, esc)]
    per_req = float(np.mean([request_cost(it, profile, e) for it, e in zip(items, esc)]))
    lat = [_latency(it, profile, e) for it, e in zip(items, esc)]
    month = monthly(per_req, volume, True, profile)
    return CurvePoint(
        threshold=t, accuracy=float(np.mean(scores)), cloud_share=float(np.mean(esc)),
        cost_per_1k=1000 * month / volume if volume else 1000 * per_req,
        p50_ms=float(np.percentile(lat, 50)), p95_ms=float(np.percentile(lat, 95)), n=len(items),
    )


def thresholds(items: Sequence[PairedItem]) -> list[float]:
    """Every threshold that changes the cascade on these items: all device (-inf), each
    distinct confidence, and all escalated (+inf)."""
    return [-math.inf, *sorted({it.confidence for it in items if math.isfinite(it.confidence)}), math.inf]


def curve(items: Sequence[PairedItem], profile: CostProfile, volume: int,
          ts: Sequence[float] | None = None) -> list[CurvePoint]:
    """The cascade at every threshold (default: every distinct confidence of the items)."""
    return [cascade_point(items, t, profile, volume) for t in (ts if ts is not None else thresholds(items))]


# -- options and the decision ----------------------------------------------------------------


def _option(action: str, t: float | None, calib: Sequence[PairedItem], test: Sequence[PairedItem],
            profile: CostProfile, volume: int, seed: int) -> Option:
    def outcome(items):
        if action == "cloud":
            scores = [it.cloud_score for it in items]
            per_req = float(np.mean([request_cost(it, profile, True, device_runs=False) for it in items]))
            lat = [_latency(it, profile, True, device_runs=False) for it in items]
            return scores, per_req, lat, 1.0
        thr = -math.inf if action == "device" else t
        esc = [it.confidence < thr for it in items]
        scores = [it.cloud_score if e else it.device_score for it, e in zip(items, esc)]
        per_req = float(np.mean([request_cost(it, profile, e) for it, e in zip(items, esc)]))
        lat = [_latency(it, profile, e) for it, e in zip(items, esc)]
        return scores, per_req, lat, float(np.mean(esc))

    cal_scores = outcome(calib)[0]
    scores, per_req, lat, share = outcome(test)
    value, lo, hi = metrics.mean_with_ci(scores, seed=seed)
    return Option(
        action=action, threshold=t, calib_accuracy=float(np.mean(cal_scores)), accuracy=value,
        ci_low=lo, ci_high=hi, cloud_share=share,
        monthly_cost=monthly(per_req, volume, action != "cloud", profile),
        p50_ms=float(np.percentile(lat, 50)), p95_ms=float(np.percentile(lat, 95)),
    )


def choose_threshold(calib: Sequence[PairedItem], profile: CostProfile, volume: int,
                     min_accuracy: float) -> float | None:
    """The threshold with the smallest cloud share whose calibration accuracy reaches the
    target (the cheapest on ties); None if no threshold reaches it."""
    ok = [p for p in curve(calib, profile, volume) if p.accuracy >= min_accuracy]
    if not ok:
        return None
    return min(ok, key=lambda p: (p.cloud_share, p.cost_per_1k)).threshold


def _pick(options: Sequence[Option], min_accuracy: float) -> tuple[Option, bool]:
    """Cheapest option whose calibration accuracy meets the target; else the most accurate."""
    ok = [o for o in options if o.calib_accuracy >= min_accuracy]
    if ok:
        return min(ok, key=lambda o: (o.monthly_cost, -o.calib_accuracy)), True
    return max(options, key=lambda o: (o.calib_accuracy, -o.monthly_cost)), False


def _rule_actions(pairs: dict, min_accuracy: float, seed: int) -> dict[str, str]:
    """The simple alternative: per language, device if the device's pooled calibration
    accuracy over that language's tasks reaches the target, else cloud."""
    pooled: dict[str, list[float]] = defaultdict(list)
    for (_task, lang, _output), items in pairs.items():
        pooled[lang] += [it.device_score for it in split_items(items, seed)[0]]
    return {lang: "device" if v and np.mean(v) >= min_accuracy else "cloud" for lang, v in pooled.items()}


def break_even(items: Sequence[PairedItem], profile: CostProfile) -> float | None:
    """Monthly volume above which answering on the device costs less than the cloud: the
    device's fixed monthly cost over the per-request saving (None: the device never wins)."""
    dev = float(np.mean([request_cost(it, profile, False) for it in items]))
    cl = float(np.mean([request_cost(it, profile, True, device_runs=False) for it in items]))
    if cl <= dev:
        return None
    return profile.device_monthly_fixed / (cl - dev)


def decide(pairs: dict[tuple[str, str, str], list[PairedItem]], profile: CostProfile,
           min_accuracy: float, seed: int = 1234) -> list[Decision]:
    """A decision per (task, language); see the module docstring for the method."""
    rules = _rule_actions(pairs, min_accuracy, seed)
    out = []
    for (task, lang, output), items in sorted(pairs.items()):
        calib, test = split_items(items, seed)
        if len(calib) < 2 or len(test) < 2:
            continue
        volume = profile.monthly_volume(task, lang)
        device = _option("device", None, calib, test, profile, volume, seed)
        cloud = _option("cloud", None, calib, test, profile, volume, seed)
        t = choose_threshold(calib, profile, volume, min_accuracy)
        cascade = (_option("cascade", t, calib, test, profile, volume, seed)
                   if t is not None and math.isfinite(t) else None)
        rule = device if rules[lang] == "device" else cloud
        chosen, meets = _pick([o for o in (device, cascade, cloud) if o is not None], min_accuracy)
        out.append(Decision(
            task=task, lang=lang, output=output, n_calib=len(calib), n_test=len(test),
            volume=volume, chosen=chosen, meets_target=meets, device=device, cloud=cloud,
            cascade=cascade, rule=Option(**{**asdict(rule), "action": f"rule:{rule.action}"}),
            break_even_volume=break_even(items, profile), curve=tuple(curve(test, profile, volume)),
        ))
    return out
