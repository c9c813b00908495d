"""Routing analysis and `iberlite decide` on real stored runs (both catalog models, real data).

SmolLM2-135M plays the device and Gemma-3-270M the cloud; here both run in process so the
test needs no server (the analysis reads stored items only; tests/test_cloud.py covers the
HTTP tier).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from iberlite.decide.prices import load_profile
from iberlite.decide.routing import (
    cascade_point,
    choose_threshold,
    decide,
    load_pairs,
    split_items,
)
from iberlite.errors import UserError
from iberlite.run.runner import run
from iberlite.run.spec import RunSpec

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "examples" / "cost_profile.yaml"
BIN = Path(sys.executable).parent
DEVICE, CLOUD = "smollm2-135m", "gemma3-270m"


@pytest.fixture(scope="module")
def db(tmp_path_factory, data_dir):
    path = tmp_path_factory.mktemp("routing") / "iberlite.db"
    run(RunSpec(models=(DEVICE, CLOUD), tasks=("xstorycloze_es", "xnli_es"), limit=24, n_threads=1,
                db=path, data_dir=data_dir))
    return path


def test_a_cascade_point_equals_brute_force_from_the_item_table(db):
    profile = load_profile(PROFILE)
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT e.model, i.doc_id, i.correct, i.confidence, i.wall_ms, i.prompt_tokens, i.choices_json, "
        "i.run_id FROM items i JOIN evals e USING (eval_key) WHERE e.task = 'xstorycloze_es'").fetchall()
    (cost_json,) = conn.execute("SELECT cost_json FROM runs").fetchone()
    conn.close()
    energy = json.loads(cost_json)[DEVICE]["energy_j"]
    dev = {r[1]: r for r in rows if r[0] == DEVICE}
    cl = {r[1]: r for r in rows if r[0] == CLOUD}
    conn = sqlite3.connect(db)  # energy is shared over the run's device items, both tasks
    dev_wall_all = conn.execute("SELECT SUM(i.wall_ms) FROM items i JOIN evals e USING (eval_key) "
                                "WHERE e.model = ?", (DEVICE,)).fetchone()[0]
    conn.close()
    t = float(np.median([r[3] for r in dev.values()]))
    volume = profile.monthly_volume("xstorycloze_es", "es")
    correct, escalated, cost, latency = [], [], [], []
    for doc in sorted(dev):
        d, c = dev[doc], cl[doc]
        esc = d[3] < t
        escalated.append(esc)
        correct.append(c[2] if esc else d[2])
        e_j = energy * d[4] / dev_wall_all
        price = e_j / 3.6e6 * profile.electricity_per_kwh
        if esc:
            price += (c[5] * profile.cloud_input_per_mtok + len(json.loads(c[6])) * profile.cloud_output_per_mtok) / 1e6
        cost.append(price)
        latency.append(d[4] + (c[4] + profile.cloud_latency_overhead_ms if esc else 0.0))
    pairs = load_pairs(db, DEVICE, CLOUD)[("xstorycloze_es", "es", "multiple_choice")]
    point = cascade_point(pairs, t, profile, volume)
    assert point.n == len(dev) == 24
    assert point.accuracy == sum(correct) / len(correct)
    assert point.cloud_share == sum(escalated) / len(escalated)
    fixed = profile.device_hardware_cost / profile.device_lifetime_hours * 730 + profile.device_fixed_monthly
    assert point.cost_per_1k == pytest.approx(1000 * (sum(cost) / len(cost) * volume + fixed) / volume, rel=1e-12)
    assert point.p50_ms == pytest.approx(float(np.median(latency)), rel=1e-12)
    assert 0 < point.cloud_share < 1


def test_the_threshold_is_chosen_on_the_calibration_half_only(db):
    profile = load_profile(PROFILE)
    pairs = load_pairs(db, DEVICE, CLOUD)
    key = ("xnli_es", "es", "multiple_choice")
    items = pairs[key]
    calib, test = split_items(items, seed=7)
    assert len(calib) == len(test) == 12
    assert {i.doc_id for i in calib}.isdisjoint({i.doc_id for i in test})
    assert split_items(list(reversed(items)), seed=7) == (calib, test)  # order does not matter
    assert split_items(items, seed=8) != (calib, test)  # the seed does
    before = decide({key: items}, profile, min_accuracy=0.4, seed=7)[0]
    # Change every test-half answer: what was chosen must not move, what is reported must.
    test_ids = {i.doc_id for i in test}
    flipped = [replace(i, device_score=1 - i.device_score, cloud_score=1 - i.cloud_score)
               if i.doc_id in test_ids else i for i in items]
    after = decide({key: flipped}, profile, min_accuracy=0.4, seed=7)[0]
    assert (after.chosen.action, after.chosen.threshold) == (before.chosen.action, before.chosen.threshold)
    assert after.chosen.calib_accuracy == before.chosen.calib_accuracy
    assert after.device.accuracy == pytest.approx(1 - before.device.accuracy)
    assert choose_threshold(calib, profile, 1000, 0.4) == choose_threshold(
        [i for i in flipped if i.doc_id not in test_ids], profile, 1000, 0.4)


def test_recommendation_meets_the_target_on_calibration_and_is_cheapest(db):
    profile = load_profile(PROFILE)
    for d in decide(load_pairs(db, DEVICE, CLOUD), profile, min_accuracy=0.5, seed=1234):
        options = [o for o in (d.device, d.cascade, d.cloud) if o is not None]
        ok = [o for o in options if o.calib_accuracy >= 0.5]
        if ok:
            assert d.meets_target and d.chosen.monthly_cost == min(o.monthly_cost for o in ok)
        else:
            assert not d.meets_target and d.chosen.calib_accuracy == max(o.calib_accuracy for o in options)
        assert d.n_calib + d.n_test == 24
        shares = [p.cloud_share for p in d.curve]
        assert min(shares) == 0.0 and max(shares) == 1.0


def test_decide_command_prints_stores_and_writes_a_policy(db, tmp_path):
    policy = tmp_path / "policy.json"
    out = subprocess.run([str(BIN / "iberlite"), "decide", "--device", DEVICE, "--cloud", CLOUD,
                          "--profile", str(PROFILE), "--min-accuracy", "0.5", "--db", str(db),
                          "--policy-out", str(policy)], capture_output=True, text=True, env={**os.environ, "COLUMNS": "250"})
    assert out.returncode == 0, out.stderr
    assert "xstorycloze_es" in out.stdout and "xnli_es" in out.stdout and "illustrative" in out.stdout
    data = json.loads(policy.read_text())
    assert {r["task"] for r in data["routes"]} == {"xstorycloze_es", "xnli_es"}
    assert all(r["action"] in ("device", "cloud", "cascade") for r in data["routes"])
    conn = sqlite3.connect(db)
    (n,) = conn.execute("SELECT COUNT(*) FROM decisions").fetchone()
    conn.close()
    assert n >= 1
    html = tmp_path / "r.html"
    rep = subprocess.run([str(BIN / "iberlite"), "report", "--db", str(db), "-o", str(html)],
                         capture_output=True, text=True)
    assert rep.returncode == 0, rep.stderr
    page = html.read_text()
    assert 'id="routing"' in page and "accuracy vs share sent to" in page


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("cloud: [1, 2", "not valid YAML"),
    ("cloud: {input_per_mtok: -1, output_per_mtok: 1}\ndevice: {electricity_per_kwh: 0.2}\nvolume: {default: 10}",
     "non-negative number"),
    ("cloud: {input_per_mtok: 1}\ndevice: {electricity_per_kwh: 0.2}\nvolume: {default: 10}", "output_per_mtok"),
])
def test_bad_cost_profiles_are_one_sentence(tmp_path, content, message):
    path = tmp_path / "p.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_profile(path)
    if content is None:
        out = subprocess.run([str(BIN / "iberlite"), "decide", "--device", "a", "--cloud", "b", "--profile",
                              str(path), "--db", str(tmp_path / "x.db")], capture_output=True, text=True)
        assert out.returncode == 2 and "Traceback" not in out.stderr and "does not exist" in out.stderr


def test_break_even_volume_is_fixed_cost_over_saving():
    from iberlite.decide.routing import PairedItem, break_even

    profile = load_profile(PROFILE)
    item = PairedItem("d", 1, 1, 0.5, 100.0, 200.0, device_energy_j=36.0, cloud_input_tokens=1000,
                      cloud_output_tokens=2)
    dev = 36.0 / 3.6e6 * profile.electricity_per_kwh
    cloud = (1000 * profile.cloud_input_per_mtok + 2 * profile.cloud_output_per_mtok) / 1e6
    expected = (profile.device_hardware_cost / profile.device_lifetime_hours * 730) / (cloud - dev)
    assert break_even([item], profile) == pytest.approx(expected)
    assert math.isfinite(expected) and expected > 0
