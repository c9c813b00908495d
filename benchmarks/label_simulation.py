"""Does choosing which rows to label beat random? The labelling loop in simulation (issue 34).

For each MODEL:TASK, the pool is --pool rows sampled once (seed 1234) from the task's train
split, the same for every strategy and seed. A strategy picks --step rows; only their gold labels
are revealed (stored as labels, source "simulation"); an adapter is trained on every label so
far (`adapt --labels`, the default hyper-parameters); the next round selects with that adapter;
and so on up to the last size of --rounds. Every point is evaluated on the same first
--eval-limit test items through the ordinary runner (items stored in --db, adapters cached in
--models-dir, pool scores cached per model and row: a second run recomputes nothing).

random and diverse read no scores, so only margin and mix rescore the pool after each round.

    python benchmarks/label_simulation.py --runs smollm2-135m:bec_eu --strategies random,margin,diverse,mix \
        --seeds 0 --rounds 100,200,300 --eval-limit 300 --threads 1 --db sim.db --models-dir models \
        --data-dir ../shared/data

Per curve: the score at each point with its 95% CI, the area under the curve (mean score over
the points, the zero-shot base included), the labels needed to reach random's score at the last
size (same seed), the recall of the rarest class (in the test items), and the selection time.
Writes benchmarks/out/label_simulation.json with the device fingerprint after every curve.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from iberlite.adapt.examples import train_spec
from iberlite.adapt.make import adapt, plan
from iberlite.adapt.train import TrainConfig
from iberlite.analysis.language_gap import paired_bootstrap
from iberlite.device.fingerprint import fingerprint
from iberlite.engines.factory import EngineOptions, open_engine
from iberlite.label.select import score_rows, scorer_key
from iberlite.label.strategies import Candidate, select
from iberlite.models.adapters import ADAPTER_SEP
from iberlite.models.names import resolve_model
from iberlite.models.quantize import MODELS_DIR_ENV
from iberlite.run.runner import run
from iberlite.run.spec import RunSpec
from iberlite.scoring.metrics import mean_with_ci
from iberlite.store import Store
from iberlite.store.labels import LabelBook, LabelEvent, PoolRow
from iberlite.tasks.data import docs_from_rows, read_rows
from iberlite.tasks.items import load_items
from iberlite.tasks.registry import load_task_specs
from iberlite.tasks.render import content_hash, render_fields

OUT = Path(__file__).resolve().parent / "out"
SCORE_AWARE = ("margin", "entropy", "mix")


def _pool(spec, data_dir: Path, size: int) -> tuple[list[PoolRow], dict[str, int]]:
    """--pool train rows (not evaluated items), the same for every strategy; their gold labels."""
    tspec = train_spec(spec)
    evaluated = {content_hash(i.context) for i in load_items(spec, data_dir).instances}
    train = [i for i in load_items(tspec, data_dir).instances if content_hash(i.context) not in evaluated]
    random.Random(1234).shuffle(train)
    rows_by_id = {doc.id: doc.fields for doc in docs_from_rows(tspec, read_rows(tspec, data_dir))}
    pool, gold = [], {}
    for inst in train[:size]:
        fields = rows_by_id[inst.doc_id]
        h = f"sim{content_hash(inst.context)[:13]}"
        pool.append(PoolRow(spec.name, h, dict(fields), inst.context, "train split", False))
        gold[h] = int(inst.gold)
    return pool, gold


def _correct(db: Path, model: str, task: str) -> dict[str, tuple[float, str, str]]:
    """doc_id -> (1.0 when right, gold, prediction), from the model's fullest evaluation."""
    with Store(db) as store:
        ev = store.evals_with_most_items(model=model)[(model, task)]
        return {it.doc_id: (float(bool(it.correct)), it.gold, it.prediction or "") for it in store.items(ev.eval_key)}


def _evaluate(model: str, task: str, args) -> dict[str, tuple[float, str, str]]:
    run(RunSpec(models=(model,), tasks=(task,), limit=args.eval_limit, data_dir=args.data_dir, db=args.db,
                n_threads=args.threads), command=f"benchmarks/label_simulation.py {model} {task}")
    return _correct(args.db, model, task)


def curve(model: str, task: str, strategy: str, seed: int, args, base_scores: dict) -> dict:
    """One strategy's rounds for one seed: the points, each with its adapter and evaluation."""
    spec = load_task_specs()[task]
    pool, gold = _pool(spec, args.data_dir, args.pool)
    choices_n = len(spec.doc_to_choice) if isinstance(spec.doc_to_choice, tuple) else None
    lab_db = args.work / f"{model}-{task}-{strategy}-s{seed}.db"
    lab_db.unlink(missing_ok=True)
    with Store(lab_db) as store:
        LabelBook(store).add_pool(pool)
    texts = {r.row_hash: r for r in pool}
    labelled: list[str] = []
    scores = dict(base_scores)
    scorer = None
    points = [{"labels": 0, "model": model, "select_s": 0.0}]
    for size in args.rounds:
        t0 = time.perf_counter()
        left = [r for r in pool if r.row_hash not in set(labelled)]
        if strategy in SCORE_AWARE and scorer is not None:
            missing = [r for r in left if (scorer, r.row_hash) not in scores]
            eng = open_engine(resolve_model(scorer, models_dir=args.models_dir), EngineOptions(n_threads=args.threads))
            try:
                score_rows(eng, spec, missing,
                           lambda b: scores.update({(scorer, h): lp for h, lp, _ in b}))
            finally:
                eng.close()
        key = scorer or model
        cands = [Candidate(r.row_hash, r.text, tuple(scores.get((key, r.row_hash), (0.0,) * (choices_n or 1))))
                 for r in left]
        picked = select(cands, size - len(labelled), strategy, seed=seed)
        select_s = time.perf_counter() - t0
        new = [p.row_hash for p in picked]
        labelled += new
        events = []
        for h in new:
            inst = render_fields(spec, texts[h].fields, h)
            events.append(LabelEvent(h, "label", inst.choices[gold[h]], "gold", "simulation"))
        with Store(lab_db) as store:
            LabelBook(store).add_events(task, events)
        config = TrainConfig(seed=seed)
        p = plan(model, task, config, data_dir=args.data_dir, name=f"{task}-sim-{strategy}-s{seed}-n{size}",
                 models_dir=args.models_dir, labels_db=lab_db)
        adapter, cached = adapt(p, n_threads=args.threads)
        name = f"{p.base.name}{ADAPTER_SEP}{p.name}"
        print(f"  {strategy} seed {seed} n={size}: picked in {select_s:.1f} s, adapter "
              f"{'cached' if cached else 'trained'} in {adapter.seconds:.0f} s", flush=True)
        points.append({"labels": size, "model": name, "select_s": round(select_s, 2),
                       "train_s": adapter.seconds, "picked_classes": np.bincount(
                           [gold[h] for h in new], minlength=choices_n or 0).tolist()})
        scorer = name
    for pt in points:
        pt["items"] = _evaluate(pt["model"], task, args)
    return {"model": model, "task": task, "strategy": strategy, "seed": seed, "points": points}


def summarize(c: dict, random_curve: dict | None) -> dict:
    """Scores with CIs, area under the curve, labels to reach random's last score, rarest-class recall."""
    docs = sorted(set.intersection(*(set(p["items"]) for p in c["points"])))
    golds = [c["points"][0]["items"][d][1] for d in docs]
    rare = min(set(golds), key=golds.count)
    out = []
    for p in c["points"]:
        right = [p["items"][d][0] for d in docs]
        rare_docs = [d for d in docs if p["items"][d][1] == rare]
        score, low, high = mean_with_ci(right)
        out.append({"labels": p["labels"], "score": score, "ci": (low, high),
                    "rare_recall": float(np.mean([p["items"][d][2] == rare for d in rare_docs])),
                    "select_s": p["select_s"]})
    auc = float(np.mean([o["score"] for o in out]))
    reach = None
    if random_curve is not None:
        target = random_curve["summary"]["points"][-1]["score"]
        reach = next((o["labels"] for o in out if o["labels"] > 0 and o["score"] >= target), None)
    gap = None
    if random_curve is not None and c is not random_curve:
        last, rl = c["points"][-1], random_curve["points"][-1]
        g = paired_bootstrap([rl["items"][d][0] for d in docs], [last["items"][d][0] for d in docs])
        gap = {"points": g.gap, "ci_low": g.ci_low, "ci_high": g.ci_high}
    return {"points": out, "auc": auc, "reach_random_last": reach, "rare_class": rare, "vs_random_last": gap}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="smollm2-135m:bec_eu,gemma3-270m:bec_eu,gemma3-270m:bhtc_eu")
    ap.add_argument("--strategies", default="random,margin,diverse,mix")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rounds", default="100,200,300")
    ap.add_argument("--pool", type=int, default=1000)
    ap.add_argument("--eval-limit", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--db", type=Path, default=Path("label_simulation.db"))
    ap.add_argument("--work", type=Path, default=Path("label_simulation"), help="the per-curve label databases")
    ap.add_argument("--models-dir", type=Path, default=None)
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("IBERLITE_DATA_DIR", "../shared/data")))
    ap.add_argument("--out", type=Path, default=OUT / "label_simulation.json")
    args = ap.parse_args()
    args.rounds = [int(s) for s in args.rounds.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    if args.models_dir is not None:
        os.environ[MODELS_DIR_ENV] = str(args.models_dir)
    device = asdict(fingerprint(args.threads))
    t0 = time.perf_counter()
    results = []
    for run_spec in args.runs.split(","):
        model, task = run_spec.split(":")
        spec = load_task_specs()[task]
        pool, _ = _pool(spec, args.data_dir, args.pool)
        t1 = time.perf_counter()
        base_scores = _base_scores(model, spec, pool, args)
        print(f"{model} {task}: the pool of {len(pool)} scored in {time.perf_counter() - t1:.0f} s "
              f"({scorer_key(resolve_model(model))}; 0 s: from {args.work})", flush=True)
        for seed in [int(s) for s in args.seeds.split(",")]:
            rnd = None
            for strategy in args.strategies.split(","):  # random first: the others are read against it
                c = curve(model, task, strategy, seed, args, base_scores)
                if strategy == "random":
                    rnd = c
                    c["summary"] = summarize(c, None)
                c["summary"] = summarize(c, rnd)
                results.append(c)
                _write(args, device, results, t0)  # after every curve: a long run keeps what it did
                _print(results)


def _base_scores(model: str, spec, pool: list[PoolRow], args) -> dict:
    """The base model's scores of the pool, kept in --work so that a second run does not rescore."""
    path = args.work / f"scores-{model}-{spec.name}-{len(pool)}.json"
    if path.is_file():
        return {(model, h): lp for h, lp in json.loads(path.read_text()).items()}
    scores: dict = {}
    eng = open_engine(resolve_model(model, models_dir=args.models_dir), EngineOptions(n_threads=args.threads))
    try:
        score_rows(eng, spec, pool, lambda b: scores.update({(model, h): lp for h, lp, _ in b}))
    finally:
        eng.close()
    path.write_text(json.dumps({h: lp for (_, h), lp in scores.items()}))
    return scores


def _print(results: list[dict]) -> None:
    print(f"{'model':<13} {'task':<8} {'strategy':<8} {'seed':>4} " + " ".join(
        f"{'n=' + str(p['labels']):>7}" for p in results[0]["summary"]["points"]) + f" {'AUC':>5} {'reach':>5}")
    for c in results:
        s = c["summary"]
        print(f"{c['model']:<13} {c['task']:<8} {c['strategy']:<8} {c['seed']:>4} "
              + " ".join(f"{p['score']:>7.3f}" for p in s["points"])
              + f" {s['auc']:>5.3f} {str(s['reach_random_last'] or '-'):>5}")


def _write(args, device: dict, results: list[dict], t0: float) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    slim = [{k: v for k, v in c.items() if k != "points"} | {"points": [
        {k: v for k, v in p.items() if k != "items"} for p in c["points"]]} for c in results]
    args.out.write_text(json.dumps({"device": device, "args": {k: str(v) for k, v in vars(args).items()},
                                    "curves": slim, "seconds": round(time.perf_counter() - t0, 1)}, indent=2))


if __name__ == "__main__":
    main()
