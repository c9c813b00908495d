"""`iberlite decide` with several device candidates (a model *and* how it is prompted: zero-shot,
fixed or per-item shots, an adapter), on stores written by the real runner with a
deterministic fake engine (no model runs).

The fake engine answers bec_eu right, confidently, on a hash-chosen share of the items: the
cloud model on 95%, the adapted model and SmolLM2 with shots on 90%; SmolLM2 zero-shot answers
at random (tests/fakes.py). The adapter is a record in a temporary models folder (its training
time is what decide prices); no adapter is trained here (tests/test_adapt.py trains one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import pytest

from fakes import FakeEngine, text_hash
from iberlite.decide.prices import load_profile
from iberlite.decide.router import HybridRouter, Policy, shot_prefix
from iberlite.decide.routing import split_items
from iberlite.device.energy import assumed_watts
from iberlite.engines.base import LoglikelihoodRequest
from iberlite.errors import UserError
from iberlite.models.adapters import Adapter, adapter_path, write_record
from iberlite.models.gguf_facts import file_sha256, gguf_facts
from iberlite.models.names import parse_candidate, resolve_model
from iberlite.run.runner import run
from iberlite.run.spec import RunSpec
from iberlite.store import Store
from iberlite.tasks.data import docs_from_rows, read_rows
from iberlite.tasks.items import load_items
from iberlite.tasks.registry import load_task_specs

BASE, CLOUD = "smollm2-135m", "gemma3-270m"
ADAPTED = f"{BASE}+bec_eu"
FIXED, PER_ITEM = f"{BASE}:5shot-fixed", f"{BASE}:5shot-per-item"
SKILL = {(CLOUD, "zero"): 0.95, (ADAPTED, "zero"): 0.9, (BASE, "fixed"): 0.9, (BASE, "per-item"): 0.9}
PROFILE = """illustrative: true
currency: EUR
cloud: {input_per_mtok: 0.40, output_per_mtok: 1.60, latency_overhead_ms: 250}
device: {electricity_per_kwh: 0.25, hardware_cost: 600, lifetime_hours: 26000, amortize_months: 12}
volume: {default: 10000000}
"""


class Skilled(FakeEngine):
    """The fake engine, right on a hash-chosen share of the items (by model and prompting), with
    the gold answer far ahead; the rest answered as the plain fake engine answers."""

    def __init__(self, model_name: str, golds: dict[str, str], seed: int = 1234) -> None:
        super().__init__(model_name, seed)
        self.golds = golds
        self.seen: list[LoglikelihoodRequest] = []

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]):
        self.seen += requests
        out = []
        for r, res in zip(requests, super().loglikelihood(requests)):
            question = next(q for q in self.golds if r.context.endswith(q))
            kind = "zero" if r.context == question else "fixed" if r.shared_prefix else "per-item"
            skill = SKILL.get((self.model_name, kind), 0.0)
            if text_hash(self.model_name, kind, question) % 1000 < skill * 1000:
                res = type(res)(**{**asdict(res), "logprob": -0.5 if r.continuation == self.golds[question]
                                   else -6.0 - text_hash(r.continuation) % 100 / 100})
            out.append(res)
        return out


def golds(data_dir: Path, task: str) -> dict[str, str]:
    spec = load_task_specs()[task]
    return {i.context: i.target_delimiter + i.choices[i.gold] for i in load_items(spec, data_dir, 60).instances}


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iberlite", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "80", **env}, timeout=600)


@pytest.fixture(scope="module")
def store(tmp_path_factory, data_dir):
    """bec_eu: every candidate and the cloud, 60 items; qnlieu: SmolLM2 with 5 fixed shots only
    (and the cloud zero-shot), so a zero-shot decision must leave it out."""
    d = tmp_path_factory.mktemp("candidates")
    models = d / "models"
    try:
        base_file = resolve_model(BASE)
    except UserError as exc:
        pytest.skip(f"the catalog model is not installed here: {exc}")
    gguf = adapter_path(models, BASE, "bec_eu", "k1")
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"an adapter record's file: decide reads the record, the fake engine no weights")
    adapter = Adapter(
        name="bec_eu", base=BASE, base_sha256=gguf_facts(base_file.file).sha256, architecture="llama",
        task="bec_eu", key="k1", path=str(gguf), sha256=file_sha256(gguf), rank=8, alpha=16.0, scale=2.0,
        epochs=1, lr=1e-3, batch_size=8, seed=3, max_tokens=256, targets=("q_proj",), examples=300,
        pool=6078, dropped_overlap=0, data_hash="d", train_files=("basqueglue/bec/train.jsonl",), steps=38,
        first_loss=2.0, final_loss=1.0, seconds=900.0, cpu_seconds=1700.0, peak_rss_bytes=1 << 30,
        examples_per_s=0.33, n_threads=2, n_trainable=2_400_000, token_check="ok", token_mismatches=0,
        versions="test", created="2026-12-05T00:00:00")
    write_record(adapter)
    answers = {**golds(data_dir, "bec_eu"), **golds(data_dir, "qnlieu")}
    db = d / "r.db"
    os.environ["IBERLITE_MODELS_DIR"] = str(models)
    try:
        def factory(model, spec):
            return Skilled(model.name, answers, spec.seed)

        common = dict(limit=60, db=db, data_dir=data_dir, n_threads=1)
        run(RunSpec(models=(BASE, ADAPTED, CLOUD), tasks=("bec_eu",), **common), engine_factory=factory)
        run(RunSpec(models=(CLOUD,), tasks=("qnlieu",), **common), engine_factory=factory)
        run(RunSpec(models=(BASE,), tasks=("bec_eu", "qnlieu"), num_fewshot=5, fewshot_mode="fixed", **common),
            engine_factory=factory)
        run(RunSpec(models=(BASE,), tasks=("bec_eu",), num_fewshot=5, fewshot_mode="per-item", **common),
            engine_factory=factory)
    finally:
        os.environ.pop("IBERLITE_MODELS_DIR", None)
    profile = d / "profile.yaml"
    profile.write_text(PROFILE)
    return {"db": db, "profile": profile, "env": {"IBERLITE_MODELS_DIR": str(models)}, "adapter": adapter,
            "answers": answers, "dir": d}


def decide_json(store, *devices: str, extra: Sequence[str] = ()) -> dict:
    args = [a for dev in devices for a in ("--device", dev)]
    proc = cli("decide", *args, "--cloud", CLOUD, "--profile", str(store["profile"]), "--db", str(store["db"]),
               "--format", "json", *extra, env=store["env"])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_candidate_name_is_a_model_and_its_shots():
    assert parse_candidate(FIXED) == parse_candidate(FIXED).__class__(FIXED, BASE, 5, "fixed")
    assert (parse_candidate(f"{ADAPTED}:3shot").k, parse_candidate(f"{ADAPTED}:3shot").mode) == (3, "per-item")
    assert parse_candidate("ollama:qwen:0.5b").model == "ollama:qwen:0.5b"  # a tag, not shots
    assert parse_candidate(f"{BASE}:0shot") == parse_candidate(f"{BASE}:0shot").__class__(f"{BASE}:0shot", BASE)


def test_a_device_model_is_decided_on_its_zero_shot_items_only(store):
    """The store holds SmolLM2 zero-shot and 5-shot on bec_eu, and only 5-shot on qnlieu: a
    plain --device is its zero-shot evaluations, never a k-shot one standing in for them."""
    out = decide_json(store, BASE)
    assert [(r["task"], r["lang"]) for r in out["rows"]] == [("bec_eu", "eu")]
    row = out["rows"][0]
    assert "candidate" not in row and "candidates" not in row  # one candidate: the table as before
    with Store.open_readonly(store["db"]) as s:
        zero = next(ev for ev in s.evals() if ev.model == BASE and ev.task == "bec_eu"
                    and not ev.task_info.get("fewshot"))
        items = {it.doc_id: it for it in s.items(zero.eval_key)}
    test_half = split_items([type("I", (), {"doc_id": k})() for k in items], 1234)[1]
    assert row["device_accuracy"] == pytest.approx(
        sum(bool(items[i.doc_id].correct) for i in test_half) / len(test_half))


def test_shots_without_a_zero_shot_run_are_their_own_candidate(store):
    out = decide_json(store, FIXED)
    assert {r["task"] for r in out["rows"]} == {"bec_eu", "qnlieu"}


def test_each_task_goes_to_the_cheapest_candidate_that_meets_the_target(store):
    out = decide_json(store, BASE, ADAPTED, FIXED, PER_ITEM)
    row, qnli = out["rows"]
    assert (row["task"], qnli["task"]) == ("bec_eu", "qnlieu")
    assert qnli["candidate"] == FIXED and [c["candidate"] for c in qnli["candidates"]] == [FIXED]
    cands = {c["candidate"]: c for c in row["candidates"]}
    assert list(cands) == [BASE, ADAPTED, FIXED, PER_ITEM]  # all carried, in the order named
    assert not cands[PER_ITEM]["deployable"]
    met = [c for c in row["candidates"] if c["meets_target"] and c["deployable"]]
    assert met, cands
    best = min(met, key=lambda c: (c["monthly_cost"], -c["calib_accuracy"]))
    assert row["candidate"] == best["candidate"] != PER_ITEM
    assert (row["recommend"], row["monthly_cost"]) == (best["recommend"], best["monthly_cost"])
    # the candidates were judged on the same items: the cloud-only option costs the same for all
    clouds = {c["monthly_cost"] for c in row["candidates"] if c["recommend"] == "cloud"}
    assert len(clouds) <= 1
    per_item = [n for n in out["notes"] if n.startswith(PER_ITEM)]
    assert len(per_item) == 1 and "cannot be chosen" in per_item[0]


def test_the_moves_sentence_states_the_monthly_saving_net_of_training(store):
    out = decide_json(store, BASE, ADAPTED)
    (row,) = out["rows"]
    cands = {c["candidate"]: c for c in row["candidates"]}
    base, adapted = cands[BASE], cands[ADAPTED]
    assert base["recommend"] != "device" and adapted["recommend"] == "device" and adapted["meets_target"]
    profile = load_profile(store["profile"])
    a = store["adapter"]
    one_off = profile.device_time_cost(a.seconds, a.cpu_seconds, assumed_watts())
    saving = base["monthly_cost"] - adapted["monthly_cost"]
    assert saving > 0
    where = "cloud" if base["recommend"] == "cloud" else f"a cascade ({base['cloud_share']:.0%} cloud)"
    sentence = (f"{ADAPTED} moves bec_eu (eu) from {where} to device: saves {saving:,.2f} EUR/month after "
                f"training ({one_off:.3g} EUR one-off over 12 months).")
    assert sentence in out["notes"]
    # the report shows the same sentence in its routing section (the latest decision's)
    proc = cli("report", "--db", str(store["db"]), "--format", "md", "--out", "-", env=store["env"])
    assert proc.returncode == 0, proc.stderr
    assert f"- {sentence}" in proc.stdout and f"device ({ADAPTED})" in proc.stdout
    page = store["dir"] / "r.html"
    proc = cli("report", "--db", str(store["db"]), "-o", str(page), env=store["env"])
    assert proc.returncode == 0, proc.stderr
    assert f"<li>{sentence}</li>" in page.read_text()
    # the adapter's one-off is in its own device costs, as when it is the only candidate
    plain = decide_json(store, ADAPTED)["rows"][0]
    assert plain["monthly_cost"] == pytest.approx(adapted["monthly_cost"])
    # spread over one month instead of twelve, the same device option costs 11/12 of it more
    one_month = store["dir"] / "one_month.yaml"
    one_month.write_text(PROFILE.replace("amortize_months: 12", "amortize_months: 1"))
    proc = cli("decide", "--device", ADAPTED, "--cloud", CLOUD, "--profile", str(one_month), "--db",
               str(store["db"]), "--format", "json", env=store["env"])
    assert proc.returncode == 0, proc.stderr
    sooner = json.loads(proc.stdout)["rows"][0]
    assert sooner["recommend"] == "device"
    assert sooner["monthly_cost"] - plain["monthly_cost"] == pytest.approx(one_off * 11 / 12, rel=1e-9)


def test_when_nothing_moves_decide_says_so(store):
    out = decide_json(store, BASE, PER_ITEM)
    assert not any(n.startswith(f"{PER_ITEM} moves") for n in out["notes"])
    assert any(n.startswith("No adapted or few-shot candidate moves") for n in out["notes"])


def test_a_policy_prompts_the_winning_fixed_shots_as_the_evaluation_did(store, data_dir, tmp_path):
    policy_path = tmp_path / "policy.json"
    out = decide_json(store, BASE, FIXED, extra=("--policy-out", str(policy_path)))
    row = out["rows"][0]
    assert row["candidate"] == FIXED and row["recommend"] == "device"
    policy = Policy.load(policy_path)
    spec = load_task_specs()["bec_eu"]
    route = policy.route("bec_eu", "eu")
    assert policy.device_for(route) == BASE and route.fewshot["k"] == 5 and route.fewshot["mode"] == "fixed"
    with Store.open_readonly(store["db"]) as s:
        fixed = next(ev for ev in s.evals() if ev.model == BASE and ev.task == "bec_eu"
                     and (ev.task_info.get("fewshot") or {}).get("mode") == "fixed")
        stored = s.items(fixed.eval_key)[:3]
    docs = {d.id: d for d in docs_from_rows(spec, read_rows(spec, data_dir))}
    device = Skilled(BASE, store["answers"])
    router = HybridRouter(policy, device, lambda: pytest.fail("a device route must not open the cloud"))
    shots = shot_prefix(route, spec, data_dir)
    for it in stored:
        device.seen.clear()
        ans = router.classify(spec, docs[it.doc_id], shots=shots)
        assert ans.source == "device"
        assert {r.context for r in device.seen} == {it.prompt}  # the very prompt the evaluation scored


def test_a_per_item_candidate_alone_is_decided_but_refused_as_a_policy(store, tmp_path):
    assert {r["task"] for r in decide_json(store, PER_ITEM)["rows"]} == {"bec_eu"}
    policy = tmp_path / "p.json"
    proc = cli("decide", "--device", PER_ITEM, "--cloud", CLOUD, "--profile", str(store["profile"]), "--db",
               str(store["db"]), "--policy-out", str(policy), env=store["env"])
    assert proc.returncode == 2 and not policy.exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{PER_ITEM} cannot go into a policy" in lines[0]


def test_a_policy_cannot_rebuild_per_item_shots(store, data_dir):
    from iberlite.decide.router import Route

    spec = load_task_specs()["bec_eu"]
    route = Route("bec_eu", "eu", "multiple_choice", "device",
                  fewshot={"k": 5, "mode": "per-item", "sampler": "default", "seed": 1234, "pool_hash": "x"})
    with pytest.raises(UserError, match="only fixed shots can be given to a new request"):
        shot_prefix(route, spec, data_dir)


@pytest.mark.slow
def test_route_prompts_the_device_with_the_fixed_shots_of_its_route(data_dir, tmp_path):
    """`iberlite route` on SmolLM2 (one request, one thread): the device's confidence is the
    margin the engine gives the 5-shot prompt the evaluation would build, not the zero-shot one."""
    from dataclasses import replace

    from iberlite.decide.router import Route
    from iberlite.engines.factory import EngineOptions, open_llamacpp
    from iberlite.engines.requests import choice_requests
    from iberlite.scoring.metrics import choice_margin
    from iberlite.tasks.data import doc_from_fields
    from iberlite.tasks.fewshot import FewshotSetup, fixed_prefix, load_pool, pool_hash
    from iberlite.tasks.render import render

    spec = load_task_specs()["bec_eu"]
    pool = load_pool(spec, data_dir)
    fewshot = {"k": 5, "mode": "fixed", "sampler": spec.fewshot.sampler, "seed": 7, "pool_hash": pool_hash(pool)}
    policy = tmp_path / "policy.json"
    Policy(BASE, CLOUD, 0.6, (Route("bec_eu", "eu", "multiple_choice", "device", device_model=BASE,
                                    fewshot=fewshot),)).save(policy)
    fields = docs_from_rows(spec, read_rows(spec, data_dir))[0].fields
    proc = cli("route", "--policy", str(policy), "--task", "bec_eu", "--data-dir", str(data_dir), "--threads", "1",
               json.dumps(fields, ensure_ascii=False), env={})
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["source"] == "device" and answer["cloud_ms"] == 0
    inst = render(spec, doc_from_fields(spec, fields), with_target=False)
    prefix = fixed_prefix(spec, pool, FewshotSetup(5, "fixed", 7))
    assert prefix.count("Erantzuna:") == 5
    engine = open_llamacpp(resolve_model(BASE), EngineOptions(n_threads=1))
    try:
        shot = [r.logprob for r in engine.loglikelihood(choice_requests(
            replace(inst, context=prefix + inst.context, shared_prefix=prefix), "t"))]
        zero = [r.logprob for r in engine.loglikelihood(choice_requests(inst, "z"))]
    finally:
        engine.close()
    assert answer["device_confidence"] == pytest.approx(choice_margin(shot), abs=1e-4)
    assert abs(choice_margin(shot) - choice_margin(zero)) > 1e-3
