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
from iberlite.tasks.fewshot import FewshotPlan
from iberlite.tasks.spec import TaskSpec


def eval_key(info: EngineInfo, spec: TaskSpec, data_hash: str, fewshot: FewshotPlan | None = None) -> str:
    """Key of one (model file, engine setup, task prompt, data) evaluation; items reuse it.

    A k-shot evaluation adds its shots (k, sampler, mode, seed, pool hash, delimiters) and so
    never shares items with the zero-shot one; zero-shot keys are unchanged by few-shot support.
    """
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
    if fewshot is not None and fewshot.k > 0:
        fs = spec.fewshot
        parts["fewshot"] = {**fewshot.key_parts(), "target_delimiter": fs.target_delimiter,
                            "fewshot_delimiter": fs.fewshot_delimiter, "exclude_doc": fs.excludes_doc}
    blob = json.dumps(parts, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def shots_suffix(k: int, mode: str) -> str:
    """` (5-shot fixed)` for k shots in a mode, "" for zero-shot: what a table adds to the task
    name so a k-shot number or cost never sits in a zero-shot row."""
    return f" ({k}-shot {mode})" if k > 0 else ""


def shots_tag(signature: str) -> str:
    """:func:`shots_suffix` of a k-shot aggregate's signature, "" for zero-shot."""
    for part in signature.split("|"):
        if part.startswith("shots:"):
            k, mode = part[len("shots:"):].split(",")[:2]
            return shots_suffix(int(k.removesuffix("shot")), mode)
    return ""


def eval_shots_tag(task_info: dict) -> str:
    """:func:`shots_suffix` of a stored evaluation (its `task_info`), "" for zero-shot."""
    fewshot = task_info.get("fewshot") or {}
    return shots_suffix(int(fewshot.get("k") or 0), str(fewshot.get("mode", "")))


def signature(info: EngineInfo, spec: TaskSpec, data_hash: str, n_items: int,
              device_id: str, fewshot: FewshotPlan | None = None) -> str:
    """Human-readable signature of one aggregate (`class:NAME` last when the items were pinned
    to a device class; `device` names every fingerprint that answered them; `source` after the
    model for a Hub or Ollama file)."""
    device_class = info.extra.get("device_class")
    return "|".join([
        f"model:{info.model_name}@{info.model_sha256[:12]}",
        *([f"source:{source}"] if (source := _source(info.extra)) else []),
        *([f"adapter:{info.extra['adapter_task']}@{info.extra['adapter_sha256'][:12]}"
           f",scale={info.extra.get('adapter_scale', '1.0')}"] if "adapter_sha256" in info.extra else []),
        f"quant:{info.file_type}[{info.tensor_types}]",
        f"engine:{info.engine_version.replace(' ', '-')}",
        f"scoring:{info.scoring}",
        f"layout:{info.extra.get('layout', '-')}",
        f"task:{spec.name}@{spec.prompt_hash()}",
        *([f"shots:{fewshot.label}"] if fewshot is not None and fewshot.k > 0 else []),
        f"data:{data_hash}",
        f"n:{n_items}",
        f"seed:{info.seed}",
        f"device:{device_id}",
        *([f"class:{device_class}"] if device_class else []),
    ])


def _source(extra: dict[str, str]) -> str | None:
    """Where a downloaded or Ollama file came from (`hf:REPO/FILE@COMMIT`, `ollama:NAME:TAG`);
    None for catalog models and paths, whose signatures stay as they were."""
    if "hf_repo" in extra:
        return f"hf:{extra['hf_repo']}/{extra.get('hf_file', '?')}@{extra.get('hf_commit', '?')}"
    if "ollama" in extra:
        return f"ollama:{extra['ollama']}"
    return None
