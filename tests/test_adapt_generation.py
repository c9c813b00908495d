"""Adapting to a generation task: the loss is on the reference as the task renders it, stop
string included; FLORES trains on dev and is evaluated on devtest; an overlap with the evaluated
split is refused; llama.cpp with the adapter agrees with PEFT on the reference's log-likelihood;
and a curve is read in the task's primary metric (chrF) with a paired CI.

The slow tests share one SmolLM2 curve on flores_en-eu made by the command line: the base and an
adapter trained on 16 dev sentences for one epoch (2 steps), both evaluated on 4 devtest items.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iberlite.tasks.registry import load_task_specs

SMOL = "smollm2-135m"
TASK = "flores_en-eu"
BUILTIN = Path(__file__).parents[1] / "src/iberlite/tasks/builtin"


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "iberlite", *args], capture_output=True, text=True,
                          env=env, timeout=1800)


def _user_task(tmp_path: Path, old: str, new: str) -> Path:
    """flores_en-eu copied into a tasks folder as `flores_mine`, with `old` replaced by `new`."""
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    text = (BUILTIN / f"{TASK}.yaml").read_text()
    assert text.count(old) == 1
    (tasks / "flores_mine.yaml").write_text(text.replace(f"name: {TASK}", "name: flores_mine").replace(old, new))
    return tasks


# ---------------------------------------------------------------- without a model


def test_flores_trains_on_dev_towards_the_reference_and_its_stop_string(data_dir):
    from iberlite.adapt.examples import load_training_set
    from iberlite.tasks.items import load_items
    from iberlite.tasks.render import content_hash

    spec = load_task_specs()[TASK]
    training = load_training_set(spec, data_dir, 20, seed=0)
    assert training.pool == 997 and training.dropped_overlap == 0  # every dev sentence, none evaluated
    assert training.train_files == ("flores200/eng_Latn.dev", "flores200/eus_Latn.dev")
    dev = dict(zip((data_dir / "flores200/eng_Latn.dev").read_text().splitlines(),
                   (data_dir / "flores200/eus_Latn.dev").read_text().splitlines()))
    for e in training.examples:
        english = e.context.removeprefix("English sentence: ").removesuffix("\nBasque sentence:")
        assert e.continuation == dev[english].strip() + "\n"  # delimiter "", reference, until[0]
    evaluated = {content_hash(i.context) for i in load_items(spec, data_dir).instances}
    assert len(evaluated) == 1012 and not evaluated & {e.content_hash for e in training.examples}


def test_a_flores_task_without_dev_files_has_no_train_split(tmp_path, data_dir):
    assert not (data_dir / "flores200/glg_Latn.dev").exists()
    proc = cli("adapt", SMOL, "--task", "flores_en-gl", "--data-dir", str(data_dir), "--models-dir", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "Task flores_en-gl declares no train split" in proc.stderr


def test_a_lines_train_split_maps_the_fields_of_its_files(tmp_path):
    from iberlite.errors import TaskSpecError

    tasks = _user_task(tmp_path, "  train_files:\n    sentence_eng_Latn: flores200/eng_Latn.dev\n",
                       "  train_files:\n    sentence_en: flores200/eng_Latn.dev\n")
    with pytest.raises(TaskSpecError) as exc:
        load_task_specs([tasks])
    msg = str(exc.value)
    assert "flores_mine.yaml, line 15 has `source.train_files` for the fields sentence_en, sentence_eus_Latn" in msg
    assert "same fields as its `files` (sentence_eng_Latn, sentence_eus_Latn)" in msg


def test_training_a_generation_task_on_its_evaluated_split_is_refused(tmp_path, data_dir):
    tasks = _user_task(tmp_path, "  train_files:\n    sentence_eng_Latn: flores200/eng_Latn.dev\n"
                       "    sentence_eus_Latn: flores200/eus_Latn.dev\n",
                       "  train_files:\n    sentence_eng_Latn: flores200/eng_Latn.devtest\n"
                       "    sentence_eus_Latn: flores200/eus_Latn.devtest\n")
    proc = cli("adapt", SMOL, "--task", "flores_mine", "--tasks-dir", str(tasks), "--data-dir", str(data_dir),
               "--models-dir", str(tmp_path / "models"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "1012 of the 1012 training rows of flores_mine" in lines[0], lines
    assert not (tmp_path / "models").exists()  # refused before any work


def test_squad_f1_is_paired_item_by_item():
    import numpy as np

    from iberlite.analysis.adaptation import _paired_values
    from iberlite.analysis.language_gap import mean_score
    from iberlite.scoring.metrics import ItemOutcome, aggregate

    def outcomes(outputs):
        return [ItemOutcome(logprobs=None, choices=None, gold=g, output=o)
                for o, g in zip(outputs, ["o regimento geral", "dois anos", "a reitoria", "sim"])]

    a, b = outcomes(["regimento", "três anos", "nada", "sim"]), outcomes(["o regimento geral", "dois", "a reitoria", "não"])
    va, vb, score = _paired_values("squad_f1", a, b)
    assert score is mean_score and len(va) == len(vb) == 4
    assert float(np.mean(va)) == pytest.approx(aggregate("squad_f1", a).value)
    assert float(np.mean(vb)) == pytest.approx(aggregate("squad_f1", b).value)


# ---------------------------------------------------------------- one small curve


@pytest.fixture(scope="module")
def curve(tmp_path_factory, data_dir):
    """`adapt --curve 0,16` on flores_en-eu: the base and a 16-sentence adapter on 4 devtest items."""
    tmp = tmp_path_factory.mktemp("gen")
    models, db = tmp / "models", tmp / "curve.db"
    proc = cli("adapt", SMOL, "--task", TASK, "--curve", "0,16", "--epochs", "1", "--eval-limit", "4",
               "--threads", "1", "--data-dir", str(data_dir), "--models-dir", str(models), "--db", str(db),
               "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return models, db, json.loads(proc.stdout)


@pytest.mark.slow
def test_the_curve_reads_chrf_with_a_paired_ci_and_bleu_on_request(curve):
    from iberlite.analysis.adaptation import adaptation_curves_in, curve_sentence
    from iberlite.report.render import render

    models, db, out = curve
    (c,) = adaptation_curves_in(db)
    assert (c.task, c.metric, [p.examples for p in c.points]) == (TASK, "chrf", [0, 16])
    zero, adapted = c.points
    assert adapted.model == f"{SMOL}+{TASK}-n16" and adapted.n_pairs == 4 and zero.n == 4
    assert adapted.diff == pytest.approx(adapted.score - zero.score)  # all items shared
    assert adapted.diff_low is not None and adapted.diff_high is not None
    assert adapted.diff_low <= adapted.diff <= adapted.diff_high
    assert curve_sentence(c) in out["notes"]  # the command ends with the curve's sentence
    assert f"{TASK} chrf ({SMOL})" in curve_sentence(c) and "60.0" in curve_sentence(c)  # target x100
    (b,) = adaptation_curves_in(db, metric="bleu")
    assert b.metric == "bleu" and b.adapted[0].diff == pytest.approx(b.adapted[0].score - b.zero.score)
    assert f"| {SMOL} | {TASK} | 0 | chrf | {zero.score:.1f} [" in render(db, "md")  # the report's section
    record = json.loads(next((models / "adapters").glob("*.json")).read_text())
    assert record["task"] == TASK and record["examples"] == 16 and record["steps"] == 2
    assert record["train_files"] == ["flores200/eng_Latn.dev", "flores200/eus_Latn.dev"]


@pytest.mark.slow
def test_llama_cpp_with_a_generation_adapter_agrees_with_peft_on_the_reference(curve, data_dir):
    from iberlite.adapt.agreement import measure
    from iberlite.models.adapters import resolve_adapted
    from iberlite.models.names import resolve_model
    from iberlite.tasks.items import load_items

    models, _, _ = curve
    base = resolve_model(SMOL)
    items = load_items(load_task_specs()[TASK], data_dir, limit=4).instances
    agreement = measure(base, resolve_adapted(base, f"{TASK}-n16", models), items)
    print(agreement)
    tolerance = agreement.base.max  # llama.cpp vs transformers on the base model, same references
    assert agreement.items == agreement.adapted.n == 4 and agreement.same_choice is None
    assert agreement.adapted.max <= tolerance, agreement
    assert agreement.shift.median > 2 * tolerance, agreement  # the adapter really changes scores
