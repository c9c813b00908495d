"""A PEFT LoRA adapter as the GGUF file llama.cpp loads (`general.type = adapter`).

What llama.cpp expects (its `llama-adapter.cpp`, and the names `convert_lora_to_gguf.py` gives):

* keys `general.type = adapter`, `general.architecture` equal to the base model's,
  `adapter.type = lora` and `adapter.lora.alpha`; llama.cpp scales by alpha / rank, which is
  PEFT's scaling without rsLoRA;
* for each adapted weight `blk.N.attn_q.weight` a pair `blk.N.attn_q.weight.lora_a` /
  `.lora_b`, stored as PEFT holds them (A: rank x in, B: out x rank), which in ggml's
  reversed dimension order is what llama.cpp checks against the base tensor;
* the llama architecture's Q and K weights are stored with their rows permuted for llama.cpp's
  rotary embedding (`LlamaModel.permute` in llama.cpp's HF converter; transformers undoes it
  when it loads the GGUF), so an adapter's B for Q and K gets the same row permutation. Gemma 3
  uses the NEOX rotary layout and is stored unpermuted.

Tensors are written in float32: the adapter is small (a few MB) and exact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iberlite.errors import UserError

PERMUTED_ARCHS = ("llama",)  # architectures whose Q/K rows llama.cpp's converter permutes
ADAPTER_KEY_PREFIX = "iberlite."  # our own provenance keys inside the adapter file

_PEFT_NAME = re.compile(r"(?:^|\.)(model\.layers\.\d+\.(?:self_attn|mlp)\.\w+_proj)\.lora_([AB])(?:\.\w+)?\.weight$")


@dataclass(frozen=True)
class LoraFile:
    """An adapter file read back: its metadata and its tensors."""

    fields: dict[str, object]
    tensors: dict[str, np.ndarray]


def permute_rows(b: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder B's rows as llama.cpp's converter reorders the Q/K weight rows: within each head,
    transformers' two rotary halves become llama.cpp's interleaved pairs. `n_head` is the head
    count of that projection (attention heads for Q, KV heads for K)."""
    rows = b.shape[0]
    return (b.reshape(n_head, 2, rows // n_head // 2, *b.shape[1:])
            .swapaxes(1, 2)
            .reshape(b.shape))


def gguf_tensors(state: Mapping[str, np.ndarray], arch: str, n_layers: int, n_head: int,
                 n_head_kv: int) -> dict[str, np.ndarray]:
    """PEFT's LoRA state (`...layers.3.self_attn.q_proj.lora_A.weight`) under llama.cpp's
    names (`blk.3.attn_q.weight.lora_a`), with B permuted where the base's rows are."""
    import gguf

    arch_id = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}.get(arch)
    if arch_id is None:
        raise UserError(f"llama.cpp knows no architecture {arch!r}; cannot write an adapter for it.")
    names = gguf.get_tensor_name_map(arch_id, n_layers)
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        m = _PEFT_NAME.search(key)
        if m is None:
            raise UserError(f"Unexpected adapter tensor {key}: only attention and MLP projections "
                            "are adapted.")
        base = names.get_name(m.group(1))
        if base is None:
            raise UserError(f"llama.cpp has no tensor for {m.group(1)} in architecture {arch}.")
        array = np.ascontiguousarray(value, dtype=np.float32)
        if m.group(2) == "B" and arch in PERMUTED_ARCHS:
            if base.endswith(".attn_q"):
                array = permute_rows(array, n_head)
            elif base.endswith(".attn_k"):
                array = permute_rows(array, n_head_kv)
        out[f"{base}.weight.lora_{m.group(2).lower()}"] = np.ascontiguousarray(array)
    return dict(sorted(out.items()))


def write_adapter(path: Path, arch: str, alpha: float, tensors: Mapping[str, np.ndarray],
                  provenance: Mapping[str, str]) -> None:
    """Write the adapter GGUF (atomically: a `.part` file renamed into place)."""
    import gguf

    tmp = path.with_name(path.name + ".part")
    writer = gguf.GGUFWriter(str(tmp), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    for key, value in provenance.items():
        writer.add_string(ADAPTER_KEY_PREFIX + key, str(value))
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)


def read_adapter(path: Path) -> LoraFile:
    """An adapter file's metadata and tensors as stored (for checks and tests)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    fields: dict[str, object] = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        fields[name] = field.contents()
    tensors = {t.name: np.array(t.data).reshape(tuple(reversed([int(d) for d in t.shape])))
               for t in reader.tensors}
    return LoraFile(fields, tensors)
