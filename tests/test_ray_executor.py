"""The Ray executor on a local two-node Ray cluster started in this process.

The cluster has two nodes of one CPU each, one offering the custom resource `device:fast`,
the other `device:slow` (two fake device classes on one machine). Unpinned shards may land on
either node. Every Ray task gets one CPU, so each engine runs with one thread.

Real-model tests (marked slow): the ray executor stores the same predictions and logprobs as
the local one; a worker killed in the middle of a shard costs a retry, not an item. Pipeline
tests on the deterministic fake engine: a shard that keeps failing is reported while the rest
is stored; a request that fails inside a shard costs its item, which the rerun retries; pinned shards land on the node of their class, and the report and `decide` keep
the classes apart.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from iberlite.cli.views import costs_view, failure_lines  # noqa: E402
from iberlite.decide.routing import pairs_from_store  # noqa: E402
from iberlite.engines.base import RequestFailed  # noqa: E402
from iberlite.errors import UserError  # noqa: E402
from iberlite.report.render import render  # noqa: E402
from iberlite.run.runner import run  # noqa: E402
from iberlite.run.spec import RunSpec, default_engine  # noqa: E402
from iberlite.store import Store  # noqa: E402

TESTS = Path(__file__).resolve().parent
MODELS = ("smollm2-135m", "gemma3-270m")
TASKS = ("xstorycloze_es", "xstorycloze_eu", "xnli_es", "xnli_eu")  # two tasks x two languages


@pytest.fixture(scope="module")
def cluster():
    """Two local nodes (1 CPU each): `device:fast` on the head, `device:slow` on the other.
    The workers import this module and tests/fakes.py (engine factories), so tests/ is put on
    their PYTHONPATH."""
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), previous) if p)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"device:fast": 1}})
    slow = c.add_node(num_cpus=1, resources={"device:slow": 1})
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False)
    c.wait_for_nodes()
    yield {"fast": c.head_node.node_id, "slow": slow.node_id}
    ray.shutdown()
    c.shutdown()
    if previous is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = previous


def _items(db: Path) -> list[dict]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    rows = conn.execute("SELECT e.model, e.task, i.* FROM items i JOIN evals e USING (eval_key) "
                        "ORDER BY e.model, e.task, i.seq").fetchall()
    conn.close()
    return [dict(r) for r in rows]


def _answers(db: Path) -> list[tuple]:
    return [(r["model"], r["task"], r["doc_id"], r["prediction"], r["correct"], r["logprobs_json"],
             r["n_tokens_json"], r["greedy_json"], r["eval_tokens"]) for r in _items(db)]


# -- real models --------------------------------------------------------------------------------


@pytest.mark.slow
def test_ray_sweep_stores_the_same_items_as_a_local_run(cluster, data_dir, tmp_path):
    timings = {}
    for executor in ("local", "ray"):
        spec = RunSpec(models=MODELS, tasks=TASKS, limit=20, data_dir=data_dir, db=tmp_path / f"{executor}.db",
                       executor=executor, n_threads=1, shard_size=10)
        t0 = time.perf_counter()
        result = run(spec)
        timings[executor] = time.perf_counter() - t0
        assert result.failed == ()
        assert len(result.outcomes) == len(MODELS) * len(TASKS)
    print(f"\nsweep of {len(MODELS)} models x {len(TASKS)} tasks x 20 items: "
          f"local {timings['local']:.1f} s, ray {timings['ray']:.1f} s")
    local, remote = _answers(tmp_path / "local.db"), _answers(tmp_path / "ray.db")
    assert len(local) == len(MODELS) * len(TASKS) * 20
    assert remote == local  # predictions, logprobs, token counts: identical, in the same order
    # the same scores, and every item says which device answered it
    with Store.open_readonly(tmp_path / "local.db") as a, Store.open_readonly(tmp_path / "ray.db") as b:
        def scores(store):
            return sorted((x.model, x.task, x.metric, x.value, x.n) for x in store.latest_aggregates())

        assert scores(a) == scores(b)
        workers = b.devices()
        engine_threads = {ev.engine["n_threads"] for ev in b.evals()}
    ray_items = _items(tmp_path / "ray.db")
    assert {r["device_id"] for r in ray_items} <= set(workers)
    assert all(r["device_id"] and r["device_class"] is None for r in ray_items)
    assert {workers[r["device_id"]]["n_threads"] for r in ray_items} == {1}  # one thread per CPU given
    assert engine_threads == {1}


@pytest.mark.slow
def test_lm_eval_tasks_run_on_ray_as_they_do_locally(cluster, data_dir, tmp_path, offline_hub):
    """`lm_eval:NAME` tasks (lm-eval's documents, contexts and, for xquad_es, its own
    process_results) give the same items and scores on the Ray workers as in this process."""
    pytest.importorskip("lm_eval", reason="lm_eval: tasks need the reference extra: pip install -e .[reference]")
    from iberlite.fidelity.lm_eval_tasks import write_task_dir

    include = tmp_path / "lm_eval_tasks"
    names = write_task_dir(["xnli_es", "xquad_es"], data_dir, include)
    tasks = tuple(f"lm_eval:{names[t]}" for t in ("xnli_es", "xquad_es"))
    for executor in ("local", "ray"):
        spec = RunSpec(models=("smollm2-135m",), tasks=tasks, limit=3, data_dir=data_dir,
                       db=tmp_path / f"{executor}.db", executor=executor, n_threads=1, shard_size=2,
                       lm_eval_include=(include,))
        result = run(spec)
        assert result.failed == ()
        assert {o.task for o in result.outcomes} == set(tasks)
    local, remote = _items(tmp_path / "local.db"), _items(tmp_path / "ray.db")
    assert len(local) == 6
    keys = ("task", "doc_id", "prompt", "prediction", "correct", "logprobs_json", "generated")
    assert [[r[k] for k in keys] for r in remote] == [[r[k] for k in keys] for r in local]
    with Store.open_readonly(tmp_path / "local.db") as a, Store.open_readonly(tmp_path / "ray.db") as b:
        def scores(store):
            return sorted((x.task, x.metric, x.value, x.n) for x in store.latest_aggregates())

        assert scores(a) == scores(b)
        assert {m for t, m, _, _ in scores(b) if "xquad" in t} == {"exact_match", "f1"}  # lm-eval's own metrics


class _Wrapped:
    """An engine that delegates to another; subclasses change how it scores."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def loglikelihood(self, requests):
        return self.engine.loglikelihood(requests)

    def generate(self, requests):
        return self.engine.generate(requests)

    def info(self):
        return self.engine.info()

    def close(self):
        self.engine.close()


class KillOnce:
    """Engine factory: the real engine, but the worker process kills itself (SIGKILL) at its
    second scoring call the first time any worker gets there, i.e. in the middle of a shard."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __call__(self, model, spec):
        return _KillingEngine(default_engine(model, spec), self.marker)


class _KillingEngine(_Wrapped):
    def __init__(self, engine, marker: Path) -> None:
        super().__init__(engine)
        self.marker, self.calls = marker, 0

    def loglikelihood(self, requests):
        self.calls += 1
        if self.calls == 2 and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return self.engine.loglikelihood(requests)


@pytest.mark.slow
def test_a_worker_killed_mid_shard_costs_a_retry_not_an_item(cluster, data_dir, tmp_path):
    marker = tmp_path / "killed.pid"
    spec = RunSpec(models=("smollm2-135m",), tasks=("xstorycloze_es",), limit=12, data_dir=data_dir,
                   db=tmp_path / "ray.db", executor="ray", n_threads=1, shard_size=6, chunk_size=3, retries=2)
    result = run(spec, engine_factory=KillOnce(marker))
    assert marker.exists()  # a worker did die in the middle of a shard
    assert result.failed == ()
    rows = _items(spec.db)
    doc_ids = [r["doc_id"] for r in rows]
    assert len(doc_ids) == 12 and len(set(doc_ids)) == 12  # nothing lost, nothing twice
    assert [r["seq"] for r in rows] == list(range(12))
    assert all(r["logprobs_json"] for r in rows)
    (outcome,) = result.outcomes
    assert outcome.n_items == 12 and outcome.n_new == 12


# -- the fake engine: failures, device classes, report and decide --------------------------------


class FailFor:
    """Engine factory: the fake engine, whose scoring always fails for one model; every attempt
    is logged to a file, so the test can count the retries."""

    def __init__(self, model: str, log: Path) -> None:
        self.model, self.log = model, log

    def __call__(self, model, spec):
        from fakes import fake_engine_factory

        return _Failing(fake_engine_factory(model, spec), self.log) if model.name == self.model \
            else fake_engine_factory(model, spec)


class _Failing(_Wrapped):
    def __init__(self, engine, log: Path) -> None:
        super().__init__(engine)
        self.log = log

    def loglikelihood(self, requests):
        with self.log.open("a") as f:
            f.write("attempt\n")
        raise RuntimeError("this device cannot score")


def _sample_spec(tmp_path: Path, **kw) -> RunSpec:
    no_data = tmp_path / "no_data"  # the sample tasks read their items beside their YAML
    no_data.mkdir(exist_ok=True)
    base = dict(models=MODELS, tasks=("sample_commonsense_es", "sample_commonsense_eu"), data_dir=no_data,
                db=tmp_path / "ray.db", executor="ray", n_threads=1, shard_size=4)
    return RunSpec(**{**base, **kw})


def test_a_shard_that_keeps_failing_is_reported_and_the_rest_is_stored(cluster, tmp_path, fake_engine_factory):
    log = tmp_path / "attempts.log"
    spec = _sample_spec(tmp_path, retries=1)
    result = run(spec, engine_factory=FailFor("gemma3-270m", log))
    # gemma's 2 tasks x 10 items in shards of 4: 3 shards per task, each tried twice
    assert len(result.failed) == 6
    assert {f.model for f in result.failed} == {"gemma3-270m"}
    assert all("this device cannot score" in f.error for f in result.failed)
    assert sorted((f.task, f.first_seq, f.n_items) for f in result.failed) == sorted(
        (t, s, n) for t in ("sample_commonsense_es", "sample_commonsense_eu") for s, n in ((0, 4), (4, 4), (8, 2)))
    assert len(log.read_text().splitlines()) == 6 * 2
    # what `iberlite run` prints at the end: one line per failed shard, then how to retry
    lines = failure_lines(result)
    assert sorted(line.split(" items ")[0] for line in lines[:-1]) == ["Failed: shard gemma3-270m sample_commonsense_es"] * 3 \
        + ["Failed: shard gemma3-270m sample_commonsense_eu"] * 3
    assert lines[-1].startswith("The other shards finished; rerun the same command")
    rows = _items(spec.db)
    assert {r["model"] for r in rows} == {"smollm2-135m"} and len(rows) == 20
    assert {o.model for o in result.outcomes} == {"smollm2-135m"}
    # the rerun evaluates only what is missing
    again = run(spec, engine_factory=fake_engine_factory)
    assert again.failed == ()
    assert {(o.model, o.n_new) for o in again.outcomes} == {("smollm2-135m", 0), ("gemma3-270m", 10)}
    assert len(_items(spec.db)) == 40


class _Flaky(RequestFailed):
    reason = "HTTP 503"


class FailSomeRequests:
    """Engine factory: the fake engine, but a scoring request that holds a context whose hash is
    odd fails (as an endpoint answering 503 would), for one model, until `healed` exists."""

    def __init__(self, model: str, healed: Path) -> None:
        self.model, self.healed = model, healed

    def __call__(self, model, spec):
        from fakes import fake_engine_factory

        engine = fake_engine_factory(model, spec)
        return _Flaky503(engine, self.healed) if model.name == self.model else engine


def _fails(context: str) -> bool:
    from fakes import text_hash

    return text_hash(context) % 2 == 1


class _Flaky503(_Wrapped):
    def __init__(self, engine, healed: Path) -> None:
        super().__init__(engine)
        self.healed = healed

    def loglikelihood(self, requests):
        if not self.healed.exists() and any(_fails(r.context) for r in requests):
            raise _Flaky("503 from the endpoint")
        return self.engine.loglikelihood(requests)


def test_a_failed_request_in_a_shard_costs_its_item_and_the_rerun_retries_only_those(cluster, tmp_path):
    healed = tmp_path / "healed"
    spec = _sample_spec(tmp_path, models=("smollm2-135m",), retries=0)
    result = run(spec, engine_factory=FailSomeRequests("smollm2-135m", healed))
    assert result.failed == ()  # no shard failed: its other items are stored
    failed = {(o.task, f.doc_id) for o in result.outcomes for f in o.failures}
    stored = {(r["task"], r["doc_id"]) for r in _items(spec.db)}
    assert failed and stored and not failed & stored
    assert len(failed) + len(stored) == 20
    assert all(f.reason == "HTTP 503" for o in result.outcomes for f in o.failures)
    assert sum(o.n_items for o in result.outcomes) == len(stored)  # scores leave failed items out
    assert not result.complete
    healed.touch()
    again = run(spec, engine_factory=FailSomeRequests("smollm2-135m", healed))
    assert again.complete
    assert sum(o.n_new for o in again.outcomes) == len(failed)  # only the failed items again
    assert {(r["task"], r["doc_id"]) for r in _items(spec.db)} == failed | stored


class WhereAmI:
    """Engine factory: the fake engine, logging the node and the resources of every Ray task that
    scores with it."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def __call__(self, model, spec):
        from fakes import fake_engine_factory

        return _Logging(fake_engine_factory(model, spec), self.log)


class _Logging(_Wrapped):
    def __init__(self, engine, log: Path) -> None:
        super().__init__(engine)
        self.log = log

    def loglikelihood(self, requests):
        ctx = ray.get_runtime_context()
        with self.log.open("a") as f:
            f.write(json.dumps([ctx.get_node_id(), sorted(ctx.get_assigned_resources())]) + "\n")
        return self.engine.loglikelihood(requests)


def test_pinned_shards_land_on_their_class_and_the_report_groups_by_class(cluster, tmp_path):
    log = tmp_path / "where.log"
    spec = _sample_spec(tmp_path, device_classes=("fast", "slow"))
    result = run(spec, engine_factory=WhereAmI(log))
    assert result.failed == ()
    landed = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(landed) == 2 * 2 * 2 * 3  # classes x models x tasks x shards (one chunk each)
    for node, resources in landed:
        (resource,) = [r for r in resources if r.startswith("device:")]
        assert node == cluster[resource.removeprefix("device:")]
    # the grid ran once per class: 2 classes x 2 models x 2 tasks x 10 items, each item tagged
    rows = _items(spec.db)
    assert len(rows) == 80
    assert {(r["model"], r["task"], r["device_class"]) for r in rows} == {
        (m, t, c) for m in MODELS for t in spec.tasks for c in ("fast", "slow")}
    assert len(result.outcomes) == 8
    assert {o.signature.rsplit("|", 1)[1] for o in result.outcomes} == {"class:fast", "class:slow"}
    assert set(result.cost) == {f"{m} on {c}" for m in MODELS for c in ("fast", "slow")}
    # `iberlite results --device` has one row per class
    device_table = costs_view(spec.db)
    assert "device_class" in [c.key for c in device_table.columns]
    assert sorted(r[3] for r in device_table.rows) == ["fast"] * 4 + ["slow"] * 4
    # the report shows the device figures per class
    md = render(spec.db, "md")
    assert "Device classes" in md
    table = [line for line in md.splitlines() if line.startswith("| fast ") or line.startswith("| slow ")]
    assert len(table) == 8
    html = render(spec.db, "html")
    assert "<h3>Device classes</h3>" in html and html.count("<td>slow</td>") == 4
    # decide never mixes classes: it asks for one, and reads only that class's items
    with Store.open_readonly(spec.db) as store:
        with pytest.raises(UserError, match="several device classes.*--device-class"):
            pairs_from_store(store, "smollm2-135m", "gemma3-270m")
        pairs = pairs_from_store(store, "smollm2-135m", "gemma3-270m", device_class="slow")
        assert sum(len(p) for p in pairs.values()) == 20
        with pytest.raises(UserError, match="device class 'medium'"):
            pairs_from_store(store, "smollm2-135m", "gemma3-270m", device_class="medium")


def test_an_unknown_device_class_is_one_sentence(cluster, tmp_path, fake_engine_factory):
    spec = _sample_spec(tmp_path, device_classes=("tpu",))
    with pytest.raises(UserError, match=r"No node of the Ray cluster offers device class tpu \(offered: fast, slow\)"):
        run(spec, engine_factory=fake_engine_factory)


def test_device_classes_need_the_ray_executor(tmp_path):
    spec = _sample_spec(tmp_path, executor="local", device_classes=("fast",))
    with pytest.raises(UserError, match="--device-class needs --executor ray"):
        run(spec)
