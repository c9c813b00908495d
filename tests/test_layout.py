"""The scoring layout (engines/layout.py) and the per-CPU kernel plan (engines/kernels.py):
pure logic, checked without a model, for AVX2 and AVX-512/AMX CPUs alike (features injected)."""

from __future__ import annotations

import pytest

from iberlite.engines.kernels import CpuFeatures, parse_system_info, plan_kernels
from iberlite.engines.layout import ROWS, Layout, Seq

AVX2_INFO = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
             "LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | ")
AVX512_INFO = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
               "AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | LLAMAFILE = 1 | "
               "OPENMP = 1 | REPACK = 1 | ")
AMX_INFO = AVX512_INFO.replace("LLAMAFILE", "AMX_INT8 = 1 | LLAMAFILE")
EPYC_FLAGS = frozenset("fpu sse sse2 avx avx2 fma f16c bmi2".split())
XEON_FLAGS = frozenset("avx avx2 fma avx512f avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16".split())


def features(flags, info) -> CpuFeatures:
    return CpuFeatures(frozenset(flags), parse_system_info(info))


@pytest.fixture(autouse=True)
def no_env_overrides(monkeypatch):
    monkeypatch.delenv("IBERLITE_AMX", raising=False)
    monkeypatch.delenv("IBERLITE_ALIGN", raising=False)


def test_system_info_is_parsed_into_feature_names():
    names = parse_system_info(AMX_INFO)
    assert {"AVX2", "AVX512", "AMX_INT8", "REPACK"} <= names
    assert "CPU" not in names and "" not in names


def test_avx2_cpu_keeps_extra_buffers_and_uses_blocks_of_8():
    plan = plan_kernels(features(EPYC_FLAGS, AVX2_INFO))
    assert (plan.use_extra_bufts, plan.align, plan.simd) == (True, 8, "avx2")


def test_avx512_build_uses_blocks_of_16():
    plan = plan_kernels(features(EPYC_FLAGS | {"avx512f"}, AVX512_INFO))
    assert (plan.use_extra_bufts, plan.align, plan.simd) == (True, 16, "avx512")


def test_amx_cpu_with_amx_build_turns_extra_buffers_off_unless_asked(monkeypatch):
    f = features(XEON_FLAGS, AMX_INFO)
    plan = plan_kernels(f)
    assert not plan.use_extra_bufts and plan.align == 16
    assert "AMX" in plan.reason and "IBERLITE_AMX=1" in plan.reason
    assert plan_kernels(f, allow_amx=True).use_extra_bufts
    monkeypatch.setenv("IBERLITE_AMX", "1")
    assert plan_kernels(f).use_extra_bufts


def test_amx_cpu_with_a_build_without_amx_keeps_extra_buffers():
    # llama.cpp built elsewhere (no AMX compiled in) never uses the AMX buffer
    assert plan_kernels(features(XEON_FLAGS, AVX512_INFO)).use_extra_bufts


def test_align_can_be_forced(monkeypatch):
    monkeypatch.setenv("IBERLITE_ALIGN", "32")
    assert plan_kernels(features(EPYC_FLAGS, AVX2_INFO)).align == 32


def _group(req0: int, prefix: list[int], tails: list[list[int]], start: int) -> list[Seq]:
    return [Seq(req=req0 + j, tokens=prefix + t, start=start) for j, t in enumerate(tails)]


@pytest.mark.parametrize("align", [8, 16])
def test_every_token_sits_in_a_cell_matching_its_position_modulo_align(align):
    lay = Layout(align=align, n_batch=512, n_seq_max=64, pad_token=1)
    groups = [_group(0, list(range(2, 40)), [[50, 51], [60, 61, 62]], 38),
              _group(2, list(range(100, 121)), [[7], [8], [9]], 21),
              [Seq(req=5, tokens=list(range(200, 213)), start=1)]]
    (pack, segs), = list(lay.packs(groups))
    entries = lay.lay_out(segs)
    for cell, e in enumerate(entries):
        if e.group >= 0:
            assert cell % align == e.pos % align
    # the shared prefix is shared in whole blocks only; each choice repeats the rest
    shared = [e for e in entries if e.group == 0 and len(e.seq_ids) == 2]
    assert len(shared) == 38 - 38 % align
    # every scored token is scored exactly once for its request
    targets = sorted(t for e in entries for t in e.targets)
    expected = sorted((s.req, s.tokens[p + 1]) for g in groups for s in g
                      for p in range(s.start - 1, len(s.tokens) - 1))
    assert targets == expected


@pytest.mark.parametrize("align", [8, 16])
def test_decodes_have_aligned_row_and_logit_counts(align):
    lay = Layout(align=align, n_batch=64, n_seq_max=8, pad_token=0)
    groups = [_group(3 * i, list(range(10 + i)), [[1], [2, 3], [4]], 10 + i) for i in range(12)]
    for pack, segs in lay.packs(groups):
        assert sum(len(g) for _, g in pack) <= lay.n_seq_max - 1  # the last id is the padding's
        laid = lay.lay_out(segs)
        real = [e for c in lay.chunks(laid) for e in c.entries if e.group >= 0]
        assert real == [e for e in laid if e.group >= 0]  # every token decoded once, in order
        for chunk in lay.chunks(laid):
            assert len(chunk.entries) % ROWS == 0 and len(chunk.entries) <= lay.n_batch
            assert sum(chunk.logits) % ROWS == 0
            assert all(chunk.logits[i] for i, e in enumerate(chunk.entries) if e.targets)
            pads = [e for e in chunk.entries if e.group < 0]
            assert all(e.seq_ids == (lay.n_seq_max - 1,) for e in pads)
            assert len({e.pos for e in pads}) == len(pads)  # the padding's positions run on


def test_a_wider_block_costs_padding_rows():
    """What a larger block costs, in rows: the layout for 16 is never shorter than for 8."""
    groups = [_group(2 * i, list(range(30 + i)), [[5, 6], [7]], 30 + i) for i in range(6)]
    rows = {}
    for align in (8, 16):
        lay = Layout(align=align, n_batch=512, n_seq_max=64, pad_token=0)
        rows[align] = sum(len(c.entries) for _, segs in lay.packs(groups)
                          for c in lay.chunks(lay.lay_out(segs)))
    assert rows[16] >= rows[8]


def test_layout_rejects_a_batch_that_is_not_a_multiple_of_the_block():
    with pytest.raises(ValueError, match="multiple"):
        Layout(align=16, n_batch=520, n_seq_max=4, pad_token=0)


@pytest.mark.parametrize("align", [8, 16])
def test_items_after_a_kept_prefix_ending_mid_block_take_the_cells_right_after_it(align):
    """A kept prefix of 21 tokens fills cells 0-20. A group that continues all of it starts at
    cell 21 (its block is then the one it would have alone) and so opens its own pack; a
    group that reuses only whole blocks starts at a block boundary after `base`."""
    lay = Layout(align=align, n_batch=512, n_seq_max=64, pad_token=1)
    kept = 21
    mid = [Seq(req=j, tokens=list(range(40 + j, 60)), start=5, offset=kept) for j in range(2)]
    whole = [Seq(req=2, tokens=list(range(70, 90)), start=3, offset=16)]
    packs = list(lay.packs([mid[:1], mid[1:], whole], base=kept))
    assert [[gi for gi, _ in pack] for pack, _ in packs] == [[0], [1, 2]]
    for pack, segs in packs:
        entries = lay.lay_out(segs, base=kept)
        for cell, e in enumerate(entries, start=kept):
            if e.group >= 0:
                assert cell % align == e.pos % align
        assert entries[0].group == pack[0][0] and entries[0].pos == kept  # no padding before it
