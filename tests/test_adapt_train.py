"""The training core of `iberlite adapt`: micro-batches by a token budget that leave each step
unchanged, bf16 exactly where the CPU multiplies it natively, and records that stay readable.

The packing and the precision rule are pure logic, checked without a model (CPU flags injected,
as tests/test_layout.py does for llama.cpp's kernels). One slow test trains SmolLM2 twice on the
same 16 bec_eu examples, in one pass per step and in micro-batches, and compares the weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields

import numpy as np
import pytest

from iberlite.adapt.batches import micro_batches, padded_tokens
from iberlite.adapt.precision import training_precision
from iberlite.adapt.train import TrainConfig
from iberlite.errors import UserError

ZEN3 = frozenset("fpu sse sse2 avx avx2 fma f16c bmi2".split())
ZEN4 = ZEN3 | {"avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}
ICE_LAKE = ZEN3 | {"avx512f", "avx512bw", "avx512_vnni"}  # AVX-512, no bf16 products
SAPPHIRE_RAPIDS = ICE_LAKE | {"avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"}
GRAVITON3 = frozenset("fp asimd sve sve2 bf16 i8mm".split())


# ---------------------------------------------------------------- micro-batches


def test_micro_batches_stay_within_the_budget_and_pad_to_their_own_longest():
    lengths = [50, 400, 90, 60, 600, 55, 300, 80]
    packed = micro_batches(lengths, 700)
    assert sorted(i for mb in packed for i in mb) == list(range(8))  # every sequence once
    assert packed[0] == [4]  # 600: the longest first, alone (two would be 1,200)
    for mb in packed:
        assert [lengths[i] for i in mb] == sorted((lengths[i] for i in mb), reverse=True)
        assert padded_tokens(lengths, mb) <= 700
    assert [[lengths[i] for i in mb] for mb in packed] == [[600], [400], [300, 90], [80, 60, 55, 50]]


def test_a_sequence_longer_than_the_budget_is_a_micro_batch_of_its_own():
    assert micro_batches([900, 10, 20], 100) == [[0], [2, 1]]
    assert micro_batches([5, 5, 5], 10**9) == [[0, 1, 2]]  # a large budget: one pass per step


# ---------------------------------------------------------------- precision


@pytest.mark.parametrize(("flags", "expected"), [
    (ZEN3, "fp32"),
    (ICE_LAKE, "fp32"),  # AVX-512 alone: oneDNN would only emulate bf16
    (ZEN4, "bf16"),  # avx512_bf16
    (SAPPHIRE_RAPIDS, "bf16"),  # AMX bf16 tiles (and avx512_bf16)
    (ZEN3 | {"amx_tile", "amx_int8"}, "fp32"),  # integer tiles only
    (ZEN3 | {"amx_bf16"}, "bf16"),
    (GRAVITON3, "fp32"),  # ARM bf16: not assumed (see adapt/precision.py)
    (frozenset(), "fp32"),  # flags unreadable
])
def test_bf16_is_chosen_only_where_the_cpu_multiplies_it_natively(flags, expected):
    assert training_precision(flags) == expected
    assert training_precision(flags, "auto") == expected


def test_an_explicit_precision_wins_and_a_wrong_one_is_a_user_error():
    assert training_precision(ZEN3, "bf16") == "bf16"
    assert training_precision(ZEN4, "fp32") == "fp32"
    with pytest.raises(UserError) as err:
        training_precision(ZEN4, "fp16")
    assert err.value.exit_code == 2 and "auto, bf16, fp32" in str(err.value)


def test_budget_and_checkpointing_are_recorded_but_not_keyed_and_precision_is_keyed_resolved():
    plain = TrainConfig(precision="fp32")
    assert plain.key_dict() == TrainConfig(precision="fp32", token_budget=64, grad_checkpointing=True).key_dict()
    assert "token_budget" not in plain.key_dict() and "grad_checkpointing" not in plain.key_dict()
    assert plain.key_dict() != TrainConfig(precision="bf16").key_dict()
    assert TrainConfig().key_dict()["precision"] in ("bf16", "fp32")  # never "auto"


# ---------------------------------------------------------------- records


def test_a_record_from_before_the_new_fields_still_reads(tmp_path):
    from iberlite.models.adapters import Adapter, read_record

    old_fields = [f for f in fields(Adapter) if f.name not in (
        "precision", "token_budget", "grad_checkpointing", "micro_batches", "parent", "parent_name")]
    values = {f.name: (0 if f.type in ("int", "float") else ("x",) if "tuple" in str(f.type) else "x")
              for f in old_fields}
    gguf = tmp_path / "smollm2-135m+bec_eu.abc.gguf"
    gguf.write_bytes(b"GGUF")
    values["path"] = str(gguf)
    gguf.with_suffix(".json").write_text(json.dumps(values))
    old = read_record(gguf)
    assert old is not None and old.path == str(gguf)
    assert (old.precision, old.token_budget, old.parent, old.grad_checkpointing) == ("fp32", None, None, False)
    newer = {**asdict(old), "targets": list(old.targets), "from_the_future": 1}
    gguf.with_suffix(".json").write_text(json.dumps(newer))
    assert read_record(gguf) is None  # a newer version's record is not guessed at


# ---------------------------------------------------------------- training


@pytest.fixture(scope="module")
def smol_pairs(data_dir):
    """SmolLM2 in transformers (one thread) and 16 bec_eu examples as the device's token ids."""
    import torch

    from iberlite.adapt.examples import load_training_set
    from iberlite.adapt.tokens import device_pairs
    from iberlite.engines.transformers import TransformersEngine
    from iberlite.models.names import resolve_model
    from iberlite.tasks.registry import load_task_specs

    smol = resolve_model("smollm2-135m")
    training = load_training_set(load_task_specs()["bec_eu"], data_dir, 16, seed=5)
    pairs, _, _ = device_pairs(smol, training.examples)
    engine = TransformersEngine(smol, n_threads=1)
    assert torch.get_num_threads() == 1
    yield engine, pairs
    engine.close()


BUDGET = 256  # cuts both steps of these 16 examples (64-89 tokens) into 3 passes of 2-3 sequences


@pytest.mark.slow
def test_a_step_in_micro_batches_has_the_gradient_of_the_whole_batch(smol_pairs):
    """Away from B = 0 (so A gets gradients too): the accumulated gradient of 3+ passes is the
    unsplit batch's, to float rounding, and so is the loss."""
    import torch

    from iberlite.adapt.train import accumulate_step, attach_lora

    engine, pairs = smol_pairs
    model = attach_lora(engine.model, TrainConfig(seed=5))
    try:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 1e-3, generator=torch.Generator().manual_seed(len(name)))
        base, params = model.get_base_model(), [p for p in model.parameters() if p.requires_grad]
        grads, losses = {}, {}
        for budget in (10**9, BUDGET):
            model.zero_grad(set_to_none=True)
            losses[budget], passes = accumulate_step(torch, base, pairs[:8], budget, engine.pad_id, False)
            assert passes == 1 if budget == 10**9 else passes >= 3
            grads[budget] = torch.cat([p.grad.flatten() for p in params])
    finally:
        engine.model = model.unload()
    whole, split = grads[10**9], grads[BUDGET]
    assert losses[BUDGET] == pytest.approx(losses[10**9], rel=1e-6)
    assert float((whole - split).norm() / whole.norm()) < 1e-5


@pytest.mark.slow
def test_micro_batched_training_gives_the_weights_of_unsplit_training(smol_pairs, tmp_path):
    """16 examples, batch 8, one epoch (2 steps), fp32: one pass per step against 3 per step.
    AdamW's first steps move each weight by about lr x sign(gradient), so a weight whose
    gradient is within rounding of 0 may move either way in either run: the comparison is on
    the whole matrices and on nearly every weight, not on each one."""
    from iberlite.adapt.train import attach_lora, lora_state, train_lora

    engine, pairs = smol_pairs
    weights, results = {}, {}
    for budget in (10**9, BUDGET):
        config = TrainConfig(epochs=1, seed=5, precision="fp32", token_budget=budget)
        model = attach_lora(engine.model, config)
        try:
            results[budget] = train_lora(model, pairs, config, pad_id=engine.pad_id,
                                         checkpoint=tmp_path / "none.ckpt", key="-")
            weights[budget] = {k: v.numpy() for k, v in lora_state(model).items()}
        finally:
            engine.model = model.unload()
    whole, split = results[10**9], results[BUDGET]
    assert (whole.micro_batches, split.micro_batches, whole.steps) == (2, 6, 2)
    assert split.first_loss == pytest.approx(whole.first_loss, rel=1e-6)
    assert split.final_loss == pytest.approx(whole.final_loss, rel=1e-5)
    a, b = weights[10**9], weights[BUDGET]
    assert set(a) == set(b)
    d = np.concatenate([(a[k] - b[k]).ravel() for k in a])
    b_rel = np.sqrt(sum(((a[k] - b[k]) ** 2).sum() for k in a if "lora_B" in k)
                    / sum((a[k] ** 2).sum() for k in a if "lora_B" in k))
    print(f"B relative difference {b_rel:.2e}; weights within 1e-6: {np.mean(np.abs(d) <= 1e-6):.5f}")
    assert b_rel < 1e-3 and np.mean(np.abs(d) <= 1e-6) > 0.999
