"""LoRA adapters (`iberlite adapt`): trained on a task's train split, exported for llama.cpp,
applied on the device as PEFT applies them in transformers, cached, and never trained on the
evaluated items.

The slow tests train one small SmolLM2 adapter on bec_eu (32 examples, the default
hyper-parameters: 2 epochs of 4 steps at lr 1e-3, the precision `auto` picks on this CPU) through
the command line, then check the file against the trained PEFT weights and the base file, the
per-choice log-likelihoods of both engines against the base model's own tolerance, the cache,
determinism, Ctrl-C's checkpoint, and continuing the adapter with `--from`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iberlite.adapt.precision import this_cpu_precision

SMOL = "smollm2-135m"
TRAIN = ("--task", "bec_eu", "--train-limit", "32", "--threads", "1", "--seed", "3")  # default lr and epochs


def cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "iberlite", *args], capture_output=True, text=True,
                          env=env, timeout=1800)


# ---------------------------------------------------------------- without a model


def test_permuting_b_permutes_the_delta_as_llama_cpp_permutes_the_weight():
    from iberlite.adapt.gguf_lora import permute_rows

    rng = np.random.default_rng(0)
    b, a = rng.normal(size=(12, 2)), rng.normal(size=(2, 5))
    # llama.cpp's converter interleaves each head's two rotary halves (HF's layout): row j of
    # the first half, then row j of the second, ...
    n_head, half = 2, 3
    order = [h * 6 + k * half + j for h in range(n_head) for j in range(half) for k in (0, 1)]
    assert np.array_equal(permute_rows(b, n_head) @ a, (b @ a)[order])


def test_training_examples_are_the_train_split_rendered_as_the_task_scores_it(data_dir):
    from iberlite.adapt.examples import load_training_set
    from iberlite.tasks.items import load_items
    from iberlite.tasks.registry import load_task_specs
    from iberlite.tasks.render import content_hash

    spec = load_task_specs()["bec_eu"]
    small = load_training_set(spec, data_dir, 50, seed=1)
    large = load_training_set(spec, data_dir, 100, seed=1)
    assert small.examples == large.examples[:50]  # a curve adds data, it does not swap it
    assert small.data_hash != large.data_hash
    assert small.pool == 6078 and small.train_files == ("basqueglue/bec/train.jsonl",)
    evaluated = {content_hash(i.context) for i in load_items(spec, data_dir).instances}
    assert not evaluated & {e.content_hash for e in large.examples}
    e = small.examples[0]
    assert e.context.startswith("Testua: ") and e.context.endswith("\nErantzuna:")
    assert e.continuation in (" negatiboa", " neutrala", " positiboa")


def test_training_on_evaluated_items_is_refused_in_one_sentence(tmp_path, data_dir):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    text = (Path(__file__).parents[1] / "src/iberlite/tasks/builtin/bec_eu.yaml").read_text()
    leaky = text.replace("name: bec_eu", "name: bec_eu_leaky").replace(
        "train_files: [basqueglue/bec/train.jsonl]", "train_files: [basqueglue/bec/test.jsonl]")
    (tasks / "bec_eu_leaky.yaml").write_text(leaky)
    proc = cli("adapt", SMOL, "--task", "bec_eu_leaky", "--tasks-dir", str(tasks), "--data-dir",
               str(data_dir), "--models-dir", str(tmp_path / "models"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "1302 of the 1302 training rows" in lines[0] and "--drop-overlap" in lines[0]
    assert not (tmp_path / "models").exists()  # refused before any work


def test_a_task_without_a_train_split_is_refused(tmp_path, data_dir):
    proc = cli("adapt", SMOL, "--task", "xnli_es", "--data-dir", str(data_dir), "--models-dir", str(tmp_path))
    assert proc.returncode == 2 and "no train split" in proc.stderr and "Traceback" not in proc.stderr


def test_an_unknown_adapter_is_one_sentence_and_exit_2(tmp_path, data_dir):
    proc = cli("run", "--models", f"{SMOL}+nope", "--tasks", "bec_eu", "--limit", "1", "--data-dir",
               str(data_dir), "--db", str(tmp_path / "r.db"), env_extra={"IBERLITE_MODELS_DIR": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    assert "No adapter 'nope' for smollm2-135m" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- one trained adapter


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """A SmolLM2 adapter for bec_eu made by the command line, with its JSON row."""
    models = tmp_path_factory.mktemp("models")
    proc = cli("adapt", SMOL, *TRAIN, "--data-dir", str(data_dir), "--models-dir", str(models),
               "--format", "json")
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)["rows"][0]
    return models, row, proc


@pytest.fixture(scope="module")
def base_weights():
    """The base model as transformers loads it from the GGUF (the weights PEFT trained on)."""
    from iberlite.engines.transformers import TransformersEngine
    from iberlite.models.names import resolve_model

    engine = TransformersEngine(resolve_model(SMOL), n_threads=1)
    yield engine
    engine.close()


@pytest.mark.slow
def test_adapt_trains_reports_and_is_listed(trained):
    models, row, proc = trained
    assert row["status"] == "made" and row["model"] == f"{SMOL}+bec_eu" and row["examples"] == 32
    assert row["steps"] == 8 and row["seconds"] > 0 and row["examples_per_s"] > 0
    assert (row["epochs"], row["lr"]) == (2, 1e-3)  # the measured default (docs/adapting.md)
    assert (row["precision"], row["n_threads"], row["token_budget"]) == (this_cpu_precision(), 1, 512)
    assert row["micro_batches"] >= row["steps"] and row["parent"] is None
    assert "32/32 training texts tokenize identically" in proc.stdout or "32/32" in proc.stderr
    listed = json.loads(cli("models", "--models-dir", str(models), "--format", "json").stdout)["rows"]
    mine = [r for r in listed if r["name"] == f"{SMOL}+bec_eu"]
    assert len(mine) == 1 and mine[0]["adapter_task"] == "bec_eu" and mine[0]["adapter_examples"] == 32
    assert mine[0]["adapter_seconds"] == row["seconds"] and mine[0]["made_from"] == "adapter"


@pytest.mark.slow
def test_a_second_identical_adapt_is_a_cache_hit(trained, data_dir):
    models, row, _ = trained
    proc = cli("adapt", SMOL, *TRAIN, "--data-dir", str(data_dir), "--models-dir", str(models),
               "--format", "json")
    again = json.loads(proc.stdout)["rows"][0]
    assert again["status"] == "cached" and again["sha256"] == row["sha256"] and again["path"] == row["path"]
    assert len(list((models / "adapters").glob("*.gguf"))) == 1


@pytest.mark.slow
def test_the_adapter_file_holds_the_trained_weights_in_llama_cpp_layout(trained, base_weights):
    import gguf
    from safetensors.numpy import load_file

    from iberlite.adapt.gguf_lora import read_adapter
    from iberlite.models.names import resolve_model

    _, row, _ = trained
    lora = read_adapter(Path(row["path"]))
    assert lora.fields["general.type"] == "adapter" and lora.fields["adapter.type"] == "lora"
    assert lora.fields["general.architecture"] == "llama" and lora.fields["adapter.lora.alpha"] == 16.0
    assert lora.fields["iberlite.task"] == "bec_eu" and lora.fields["iberlite.examples"] == "32"
    trained_weights = load_file(str(Path(row["path"]).with_suffix(".peft") / "adapter_model.safetensors"))
    assert len(lora.tensors) == len(trained_weights) == 30 * 7 * 2  # layers x projections x (A, B)
    assert not any(n.startswith(("token_embd.", "output.")) for n in lora.tensors)  # tied: never adapted
    # The row order of Q and K in the base GGUF, found by matching rows against the weights
    # transformers dequantized from it: the adapter's B must follow the same order.
    reader = gguf.GGUFReader(str(resolve_model(SMOL).file))
    base = {t.name: t for t in reader.tensors}
    layers = base_weights.model.model.layers
    proj = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
            "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
            "ffn_down": "mlp.down_proj"}
    for layer in (0, 17, 29):
        for name, hf in proj.items():
            a = lora.tensors[f"blk.{layer}.{name}.weight.lora_a"]
            b = lora.tensors[f"blk.{layer}.{name}.weight.lora_b"]
            peft_name = f"base_model.model.model.layers.{layer}.{hf}.lora_%s.weight"
            assert np.array_equal(a, trained_weights[peft_name % "A"])
            t = base[f"blk.{layer}.{name}.weight"]
            stored = gguf.dequantize(t.data, t.tensor_type).reshape(tuple(reversed([int(d) for d in t.shape])))
            module = layers[layer]
            for part in hf.split("."):
                module = getattr(module, part)
            hf_rows = {r.tobytes(): i for i, r in enumerate(module.weight.detach().numpy())}
            order = [hf_rows[r.tobytes()] for r in stored]
            assert np.array_equal(b, trained_weights[peft_name % "B"][order])
            assert (order != sorted(order)) == (name in ("attn_q", "attn_k"))


@pytest.mark.slow
def test_llama_cpp_with_the_adapter_agrees_with_peft_within_the_base_tolerance(trained, base_weights,
                                                                              data_dir):
    from iberlite.adapt.agreement import measure
    from iberlite.models.adapters import resolve_adapted
    from iberlite.models.names import resolve_model
    from iberlite.tasks.items import load_items
    from iberlite.tasks.registry import load_task_specs

    models, row, _ = trained
    assert row["precision"] == this_cpu_precision()  # bf16 on a CPU with avx512_bf16 or amx_bf16
    adapted = resolve_adapted(resolve_model(SMOL), "bec_eu", models)
    assert adapted.adapter == Path(row["path"]) and adapted.adapter_sha256 == row["sha256"]
    items = load_items(load_task_specs()["bec_eu"], data_dir, limit=12).instances
    agreement = measure(resolve_model(SMOL), adapted, items, reference=base_weights)
    print(agreement)
    tolerance = agreement.base.max  # llama.cpp vs transformers on the base model, same items
    assert agreement.adapted.max <= tolerance, agreement
    assert agreement.shift.median > 2 * tolerance, agreement  # the adapter really changes scores
    assert agreement.same_choice >= agreement.items - 1


@pytest.mark.slow
def test_the_adapter_is_in_the_engine_info_and_plain_keys_do_not_change(trained, data_dir):
    from iberlite.engines.llamacpp import LlamaCppEngine
    from iberlite.models.adapters import resolve_adapted
    from iberlite.models.names import resolve_model
    from iberlite.run.signature import eval_key, signature
    from iberlite.tasks.registry import load_task_specs

    models, row, _ = trained
    base = resolve_model(SMOL)
    spec = load_task_specs()["bec_eu"]
    with LlamaCppEngine(base, n_threads=1) as engine:
        plain = engine.info()
    with LlamaCppEngine(resolve_adapted(base, "bec_eu", models), n_threads=1) as engine:
        adapted = engine.info()
    assert not any(k.startswith("adapter") for k in plain.extra)
    assert adapted.extra["adapter_sha256"] == row["sha256"] and adapted.extra["adapter_task"] == "bec_eu"
    assert adapted.model_name == f"{SMOL}+bec_eu" and adapted.model_sha256 == plain.model_sha256
    assert eval_key(plain, spec, "d") != eval_key(adapted, spec, "d")
    assert f"adapter:bec_eu@{row['sha256'][:12]},scale=1.0" in signature(adapted, spec, "d", 1, "dev")
    assert "adapter" not in signature(plain, spec, "d", 1, "dev")


@pytest.mark.slow
def test_training_is_deterministic_and_ctrl_c_resumes_to_the_same_weights(trained, base_weights, data_dir,
                                                                         tmp_path):
    """Same seed and thread count: the same weights, whether trained at once or stopped by
    Ctrl-C after two steps and resumed from the checkpoint (in-process, on the same pairs)."""
    import torch
    from safetensors.numpy import load_file

    from iberlite.adapt.examples import load_training_set
    from iberlite.adapt.tokens import device_pairs
    from iberlite.adapt.train import TrainConfig, TrainingInterrupted, attach_lora, lora_state, train_lora
    from iberlite.models.names import resolve_model
    from iberlite.tasks.registry import load_task_specs

    _, row, _ = trained
    config = TrainConfig(seed=3)
    training = load_training_set(load_task_specs()["bec_eu"], data_dir, 32, seed=3)
    pairs, _, _ = device_pairs(resolve_model(SMOL), training.examples)
    engine = base_weights
    torch.set_num_threads(1)
    ckpt = tmp_path / "a.ckpt"

    def stop_after_two(step) -> None:
        if step.step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends

    model = attach_lora(engine.model, config)
    with pytest.raises(TrainingInterrupted) as stop:
        train_lora(model, pairs, config, pad_id=engine.pad_id, checkpoint=ckpt, key="k",
                   on_step=stop_after_two)
    assert stop.value.step == 2 and ckpt.is_file()
    model = model.unload()  # a fresh LoRA on the same base, as a new process would make
    model = attach_lora(model, config)
    result = train_lora(model, pairs, config, pad_id=engine.pad_id, checkpoint=ckpt, key="k")
    assert result.resumed_from == 2 and result.steps == 8
    resumed = {k.replace(".default", ""): v.numpy() for k, v in lora_state(model).items()}
    engine.model = model.unload()
    made_by_cli = load_file(str(Path(row["path"]).with_suffix(".peft") / "adapter_model.safetensors"))
    assert set(resumed) == set(made_by_cli)
    assert all(np.array_equal(resumed[k], made_by_cli[k]) for k in resumed)


def test_training_is_a_one_off_spread_over_the_device_options_of_decide():
    from iberlite.decide.prices import load_profile
    from iberlite.decide.routing import PairedItem, decide

    profile = load_profile(Path(__file__).parents[1] / "examples" / "cost_profile.yaml")
    items = [PairedItem(f"d{i}", i % 2, 1, i / 10, 50.0, 300.0, 5.0, 400, 2) for i in range(10)]
    cost = profile.device_time_cost(wall_seconds=600, cpu_seconds=1000, watts_per_core=15)
    by_hand = (1000 * 15 / 3.6e6 * profile.electricity_per_kwh
               + profile.device_hardware_cost * 600 / 3600 / profile.device_lifetime_hours)
    assert cost == pytest.approx(by_hand) and cost > 0
    plain = decide({("t", "eu", "multiple_choice"): items}, profile, 0.5)[0]
    adapted = decide({("t", "eu", "multiple_choice"): items}, profile.with_one_off(cost), 0.5)[0]
    per_month = cost / profile.amortize_months
    assert adapted.device.monthly_cost == pytest.approx(plain.device.monthly_cost + per_month)
    assert adapted.cloud.monthly_cost == plain.cloud.monthly_cost  # the cloud never pays for it
    if plain.cascade and adapted.cascade and plain.cascade.threshold == adapted.cascade.threshold:
        assert adapted.cascade.monthly_cost == pytest.approx(plain.cascade.monthly_cost + per_month)


@pytest.mark.slow
def test_decide_with_an_adapted_device_counts_its_training(trained, data_dir, tmp_path):
    models, row, _ = trained
    env = {"IBERLITE_MODELS_DIR": str(models)}
    db = tmp_path / "r.db"
    proc = cli("run", "--models", f"{SMOL}+bec_eu,{SMOL}", "--tasks", "bec_eu", "--limit", "8",
               "--threads", "1", "--data-dir", str(data_dir), "--db", str(db), env_extra=env)
    assert proc.returncode == 0, proc.stderr
    profile = Path(__file__).parents[1] / "examples" / "cost_profile.yaml"
    proc = cli("decide", "--device", f"{SMOL}+bec_eu", "--cloud", SMOL, "--profile", str(profile),
               "--db", str(db), "--format", "json", env_extra=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    note = next(n for n in out["notes"] if "one-off" in n)
    assert f"{SMOL}+bec_eu was trained for bec_eu on 32 examples" in note


@pytest.mark.slow
def test_a_run_keeps_the_adapters_training_facts_and_the_report_draws_its_curve(trained, data_dir, tmp_path):
    from iberlite.analysis.adaptation import adaptation_curves_in
    from iberlite.report.render import render

    models, row, _ = trained
    db = tmp_path / "curve.db"
    proc = cli("run", "--models", f"{SMOL},{SMOL}+bec_eu", "--tasks", "bec_eu", "--limit", "6",
               "--threads", "1", "--data-dir", str(data_dir), "--db", str(db),
               env_extra={"IBERLITE_MODELS_DIR": str(models)})
    assert proc.returncode == 0, proc.stderr
    # read back without the models folder: the store alone has the examples and the cost
    (curve,) = adaptation_curves_in(db)
    zero, adapted = curve.points
    assert zero.model == SMOL and zero.examples == 0
    assert adapted.model == f"{SMOL}+bec_eu" and adapted.examples == 32 and adapted.examples_from == "engine info"
    assert adapted.training is not None and adapted.training.seconds == row["seconds"]
    assert adapted.n_pairs == 6 and adapted.latency_overhead is not None
    assert "## How much local data is enough" in render(db, "md")


# ---------------------------------------------------------------- continuing an adapter


@pytest.mark.slow
def test_from_continues_an_adapter_and_records_its_parent(trained, data_dir, tmp_path):
    """One more step from the trained adapter: it starts from the parent's weights (its first
    loss is the parent's, far below the base model's), and the record and key say so."""
    _, parent, _ = trained
    parent_key = json.loads(Path(parent["path"]).with_suffix(".json").read_text())["key"]
    args = ("adapt", SMOL, "--task", "bec_eu", "--train-limit", "8", "--epochs", "1", "--threads", "1",
            "--seed", "3", "--from", parent["path"], "--data-dir", str(data_dir), "--models-dir",
            str(tmp_path), "--format", "json")
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert f"Continuing {SMOL}+bec_eu" in proc.stderr
    row = json.loads(proc.stdout)["rows"][0]
    assert row["status"] == "made" and row["steps"] == 1
    assert (row["parent"], row["parent_name"]) == (parent_key, f"{SMOL}+bec_eu")
    record = json.loads(Path(row["path"]).with_suffix(".json").read_text())
    first = json.loads(Path(parent["path"]).with_suffix(".json").read_text())["first_loss"]
    assert record["first_loss"] < first / 2, (record["first_loss"], first)
    assert record["parent"] == parent_key and record["parent_name"] == f"{SMOL}+bec_eu"
    again = json.loads(cli(*args).stdout)["rows"][0]  # the same continuation: the same key
    assert again["status"] == "cached" and again["path"] == row["path"]
    # the parent is part of the key: the same request from scratch is another adapter
    from iberlite.adapt.make import plan
    from iberlite.adapt.train import TrainConfig

    fresh = plan(SMOL, "bec_eu", TrainConfig(epochs=1, seed=3), data_dir=data_dir, train_limit=8,
                 models_dir=tmp_path, n_threads=1)
    assert fresh.parent is None and fresh.key != record["key"]
    continued = plan(SMOL, "bec_eu", TrainConfig(epochs=1, seed=3), data_dir=data_dir, train_limit=8,
                     models_dir=tmp_path, n_threads=1, parent=parent["path"])
    assert continued.key == record["key"] and continued.parent.key == parent_key


@pytest.mark.slow
def test_from_a_parent_of_another_base_model_or_task_is_refused(trained, data_dir, tmp_path):
    models, parent, _ = trained
    common = ("--data-dir", str(data_dir), "--models-dir", str(models), "--threads", "1")
    proc = cli("adapt", "gemma3-270m", "--task", "bec_eu", "--from", parent["path"], *common)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert f"Adapter {SMOL}+bec_eu was trained on another base model" in proc.stderr
    proc = cli("adapt", SMOL, "--task", "bhtc_eu", "--drop-overlap", "--from", f"{SMOL}+bec_eu", *common)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "was trained for bec_eu, not bhtc_eu" in proc.stderr
    assert len(list((models / "adapters").glob("*.gguf"))) == 1  # nothing made
