"""Labels are a one-off cost of an adapter, as its training is (issue 34).

An adapter trained on people's labels (`iberlite adapt --labels`) records how many; `decide`
prices them as count x the median seconds the labelling page timed for the task (in the
database it decides from) x the profile's `labelling.per_hour` / 3600, falls back on the
profile's `labelling.seconds_per_label` when the page timed none, and says in one sentence
when neither is known. The stores are written by the real runner with the deterministic
engine of tests/test_decide_candidates.py (no model runs); the adapter is a record in a
temporary models folder, as there.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys

import pytest
from rich.console import Console

from iberlite.cli.decide import decide_command
from iberlite.decide.prices import load_profile
from iberlite.decide.routing import decision_from_json
from iberlite.device.energy import assumed_watts
from iberlite.errors import UserError
from iberlite.models.adapters import Adapter, adapter_path, write_record
from iberlite.models.gguf_facts import file_sha256, gguf_facts
from iberlite.models.names import resolve_model
from iberlite.report.render import render
from iberlite.run.runner import run
from iberlite.run.spec import RunSpec
from iberlite.store import Store
from iberlite.store.labels import LabelBook, LabelEvent
from test_decide_candidates import ADAPTED, BASE, CLOUD, PROFILE, Skilled, golds

LABELS = 300
PAGE_SECONDS = [3.0, 4.0, 4.2, 5.0, 61.0]  # one label left open over a coffee: the median ignores it
PRICED = PROFILE + "labelling: {per_hour: 20.0, seconds_per_label: 99}\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory, data_dir):
    """bec_eu answered by SmolLM2, SmolLM2+bec_eu (an adapter trained on 300 labels) and the
    cloud model, in two databases: `timed.db`, where the labelling page timed five labels of
    bec_eu (and an undo and a skip, which are no labels), and `untimed.db`, whose bec_eu
    labels were imported (no time) and whose only timed labels are of another task."""
    d = tmp_path_factory.mktemp("labelling")
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
        epochs=1, lr=1e-3, batch_size=8, seed=3, max_tokens=256, targets=("q_proj",), examples=LABELS,
        pool=LABELS, dropped_overlap=0, data_hash="d", train_files=("labels:timed.db",), steps=38,
        first_loss=2.0, final_loss=1.0, seconds=900.0, cpu_seconds=1700.0, peak_rss_bytes=1 << 30,
        examples_per_s=0.33, n_threads=2, n_trainable=2_400_000, token_check="ok", token_mismatches=0,
        versions="test", created="2026-12-05T00:00:00", labels=LABELS, labels_hash="0123456789abcdef",
        labellers=("ane", "jon"))
    write_record(adapter)
    answers = golds(data_dir, "bec_eu")
    timed, untimed = d / "timed.db", d / "untimed.db"
    os.environ["IBERLITE_MODELS_DIR"] = str(models)
    try:
        run(RunSpec(models=(BASE, ADAPTED, CLOUD), tasks=("bec_eu",), limit=60, db=timed, data_dir=data_dir,
                    n_threads=1), engine_factory=lambda model, spec: Skilled(model.name, answers, spec.seed))
    finally:
        os.environ.pop("IBERLITE_MODELS_DIR", None)
    shutil.copy(timed, untimed)
    with Store(timed) as s:
        page = [LabelEvent(f"r{i}", "label", "1", "ane", "page", sec) for i, sec in enumerate(PAGE_SECONDS)]
        LabelBook(s).add_events("bec_eu", [*page, LabelEvent("r0", "undo", None, "ane", "page", 2.0),
                                           LabelEvent("r9", "skip", None, "jon", "page", 30.0)])
    with Store(untimed) as s:
        LabelBook(s).add_events("bec_eu", [LabelEvent(f"r{i}", "label", "0", "jon", "import:l.jsonl")
                                           for i in range(5)])
        LabelBook(s).add_events("qnlieu", [LabelEvent("q1", "label", "0", "ane", "page", 7.0)])
    return {"timed": timed, "untimed": untimed, "dir": d, "models": models, "adapter": adapter}


def profile_file(store, text: str):
    path = store["dir"] / f"profile-{hashlib.sha256(text.encode()).hexdigest()[:8]}.yaml"
    path.write_text(text)
    return path


def decide(store, monkeypatch, capsys, db_name: str, profile: str, *devices: str) -> dict:
    """`iberlite decide --format json` in process: the rows and notes a script reads."""
    path = profile_file(store, profile)
    monkeypatch.setenv("IBERLITE_MODELS_DIR", str(store["models"]))
    capsys.readouterr()
    decide_command(device=list(devices), cloud=CLOUD, profile_path=path, min_accuracy=0.9, db=store[db_name],
                   policy_out=None, seed=1234, json_out=None, command="decide", fmt="json",
                   err=Console(file=io.StringIO()))
    return json.loads(capsys.readouterr().out)


def latest(db):
    with Store.open_readonly(db) as s:
        return [decision_from_json(d) for d in s.latest_decision().decisions]


def test_labels_cost_their_count_times_the_page_median_times_the_hourly_price(store, monkeypatch, capsys):
    out = decide(store, monkeypatch, capsys, "timed", PRICED, ADAPTED)
    (row,) = out["rows"]
    median = statistics.median(PAGE_SECONDS)  # 4.2 s: not the profile's 99 s, and not the mean
    cost = LABELS * median * 20.0 / 3600
    assert (row["labels"], row["label_seconds_median"]) == (LABELS, median)
    assert row["labelling_cost"] == pytest.approx(cost) == pytest.approx(7.0)
    assert (f"{ADAPTED} was trained on 300 labels that took a median 4.2 s each (5 timed on the labelling "
            "page): a one-off 7.00 EUR at 20.00 EUR/hour, spread over 12 months as its training is.") in out["notes"]
    # stored with the decision, apart from the training
    (stored,) = latest(store["timed"])
    assert stored.labelling is not None and stored.labelling.cost == pytest.approx(cost)
    # spread over the months with the training: the device option costs cost/12 more a month
    # than when the labels cannot be priced (a profile without a labelling section)
    unpriced = decide(store, monkeypatch, capsys, "timed", PROFILE, ADAPTED)["rows"][0]
    assert row["recommend"] == unpriced["recommend"] == "device"
    assert row["monthly_cost"] - unpriced["monthly_cost"] == pytest.approx(cost / 12, rel=1e-9)


def test_a_move_and_the_report_state_the_labels_apart_from_the_training(store, monkeypatch, capsys):
    out = decide(store, monkeypatch, capsys, "timed", PRICED, BASE, ADAPTED)
    cands = {c["candidate"]: c for c in out["rows"][0]["candidates"]}
    base, adapted = cands[BASE], cands[ADAPTED]
    a = store["adapter"]
    training = load_profile(profile_file(store, PRICED)).device_time_cost(a.seconds, a.cpu_seconds,
                                                                          assumed_watts())
    saving = base["monthly_cost"] - adapted["monthly_cost"]
    where = "cloud" if base["recommend"] == "cloud" else f"a cascade ({base['cloud_share']:.0%} cloud)"
    move = (f"{ADAPTED} moves bec_eu (eu) from {where} to device: saves {saving:,.2f} EUR/month after training "
            f"({training:.3g} EUR) and labelling 300 labels at a median 4.2 s each (7.00 EUR at 20.00 EUR/hour), "
            "one-off over 12 months.")
    assert move in out["notes"]
    # the report: the move, and the labels' cost against what the device then saves a month
    (d,) = latest(store["timed"])
    assert d.candidate == ADAPTED and d.chosen.action == "device"
    against = (f"bec_eu (eu): the 300 labels {ADAPTED} was trained on cost 7.00 EUR once (0.58 EUR/month over "
               "12 months); "
               f"answering on the device then saves {d.cloud.monthly_cost - d.chosen.monthly_cost:,.2f} EUR/month "
               "against the cloud alone, training and labels included.")
    md = render(store["timed"], "md")
    assert f"- {move}" in md and f"- {against}" in md
    pytest.importorskip("plotly", reason="the HTML report needs plotly")
    assert f"<li>{against}</li>" in render(store["timed"], "html")


def test_without_page_times_the_profile_seconds_per_label_is_used(store, monkeypatch, capsys):
    """untimed.db's bec_eu labels were imported (no time) and its timed label is of qnlieu."""
    out = decide(store, monkeypatch, capsys, "untimed", PROFILE + "labelling: {per_hour: 20, seconds_per_label: 6}\n",
                 ADAPTED)
    (row,) = out["rows"]
    assert (row["labels"], row["label_seconds_median"]) == (LABELS, 6.0)
    assert row["labelling_cost"] == pytest.approx(LABELS * 6 * 20 / 3600)
    assert (f"{ADAPTED} was trained on 300 labels that took 6.0 s each (the profile's labelling.seconds_per_label: "
            "the labelling page timed none): a one-off 10.00 EUR at 20.00 EUR/hour, spread over 12 months as its "
            "training is.") in out["notes"]


def test_labels_of_unknown_time_cost_nothing_and_say_so(store, monkeypatch, capsys):
    out = decide(store, monkeypatch, capsys, "untimed", PROFILE + "labelling: {per_hour: 20}\n", ADAPTED)
    (row,) = out["rows"]
    assert (row["labels"], row["label_seconds_median"], row["labelling_cost"]) == (LABELS, None, None)
    assert (f"{ADAPTED} was trained on 300 labels of unknown labelling time: add labelling.seconds_per_label to "
            "the profile to cost them.") in out["notes"]
    # counted as 0: the same monthly cost as a profile that prices no labelling at all
    bare = decide(store, monkeypatch, capsys, "untimed", PROFILE, ADAPTED)
    assert bare["rows"][0]["monthly_cost"] == pytest.approx(row["monthly_cost"], rel=1e-12)
    assert any("add a labelling section (per_hour, seconds_per_label)" in n for n in bare["notes"])
    (d,) = latest(store["untimed"])
    assert d.labelling is not None and d.labelling.cost == 0.0 and not d.labelling.known


def test_a_model_without_labels_is_decided_as_before(store, monkeypatch, capsys):
    priced = decide(store, monkeypatch, capsys, "timed", PRICED, BASE)
    bare = decide(store, monkeypatch, capsys, "timed", PROFILE, BASE)
    assert priced["rows"] == bare["rows"]  # no labelling columns, the same costs
    assert "labels" not in priced["rows"][0] and not any(" labels " in n for n in priced["notes"])


@pytest.mark.parametrize("section, message", [
    ("labelling: {per_hour: -20}", "`per_hour` must be a non-negative number, not -20"),
    ("labelling: {per_hour: 20, seconds_per_label: -1}", "`seconds_per_label` must be a non-negative number"),
    ("labelling: {seconds_per_label: 5}", "`per_hour` is missing"),
    ("labelling: twenty", "labelling must be a mapping"),
])
def test_a_bad_labelling_section_is_one_sentence(tmp_path, section, message):
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE + section + "\n")
    with pytest.raises(UserError, match=message) as err:
        load_profile(path)
    assert err.value.args[0].count(". ") == 0 and err.value.args[0].endswith(".")


def test_a_negative_labelling_price_stops_decide_with_exit_2(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE + "labelling: {per_hour: -20}\n")
    proc = subprocess.run([sys.executable, "-m", "iberlite", "decide", "--device", ADAPTED, "--cloud", CLOUD,
                           "--profile", str(path), "--db", str(tmp_path / "none.db")],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "2000"}, timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert line == "Error: Cost profile labelling: `per_hour` must be a non-negative number, not -20.", line
