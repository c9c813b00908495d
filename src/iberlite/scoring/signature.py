"""Evaluation keys and result signatures (in the spirit of sacreBLEU's).

Two numbers with different signatures are different measurements: another model file,
quantization, engine, prompt, data file, item count, seed or device. The signature is printed
with every aggregate so a reader can tell, and the evaluation key (the signature minus the
item count and device) decides which stored items a rerun may reuse.
"""

from __future__ import annotations

import hashlib
import json

from iberlite.engines.base import EngineInfo
from iberlite.tasks.spec import TaskSpec


def eval_key(info: EngineInfo, spec: TaskSpec, data_hash: str) -> str:
    """Key of one (model file, engine setup, task prompt, data) evaluation; items reuse it."""
    parts = {
        "model_sha256": info.model_sha256,
        "engine": info.engine,
        "engine_version": info.engine_version,
        "scoring": info.scoring,
        "n_ctx": info.n_ctx,
        "seed": info.seed,
        "extra": info.extra,
        "task": spec.name,
        "prompt": spec.prompt_hash(),
        "data": data_hash,
    }
    blob = json.dumps(parts, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def signature(info: EngineInfo, spec: TaskSpec, data_hash: str, n_items: int,
              device_id: str) -> str:
    """Human-readable signature of one aggregate (`class:NAME` last when the items were pinned
    to a device class; `device` names every fingerprint that answered them)."""
    device_class = info.extra.get("device_class")
    return "|".join([
        f"model:{info.model_name}@{info.model_sha256[:12]}",
        f"quant:{info.file_type}[{info.tensor_types}]",
        f"engine:{info.engine_version.replace(' ', '-')}",
        f"scoring:{info.scoring}",
        f"layout:{info.extra.get('layout', '-')}",
        f"task:{spec.name}@{spec.prompt_hash()}",
        f"data:{data_hash}",
        f"n:{n_items}",
        f"seed:{info.seed}",
        f"device:{device_id}",
        *([f"class:{device_class}"] if device_class else []),
    ])
