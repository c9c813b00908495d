"""Reference engine: the same GGUF file through transformers, dequantized to float32.

This is the route lm-evaluation-harness 0.4.13 takes for `--model hf` with `gguf_file=`, and
the engine reproduces that harness's semantics on purpose, so that a difference between it
and lm-eval is a bug in one of them and a difference between it and llama.cpp is numerics:

* tokens come from the tokenizer transformers rebuilds from the GGUF, called as lm-eval's
  HFLM calls it (the tokenizer's own special-token default, no BOS twice);
* a (context, continuation) pair is split as lm-eval splits it: trailing context whitespace
  moves to the continuation, the continuation's tokens are those of `context + continuation`
  after the tokens of `context`, and an empty context is scored after the BOS token (EOS when
  there is none);
* scores are float32 log-softmax sums over right-padded batches with no attention mask, the
  sequence left-truncated to the model's maximum length plus one, exactly as lm-eval does;
* generation is `model.generate` greedy with a stop check on the raw decoded text (special
  tokens included) and the result decoded without special tokens and cut at the first stop
  string, with lm-eval's default budget of 256 new tokens.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from importlib.metadata import version

from iberlite.engines.base import (
    EngineInfo,
    GenerationRequest,
    GenerationResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
)
from iberlite.errors import UserError
from iberlite.models.gguf_facts import gguf_facts
from iberlite.models.model_file import ModelFile

_MISSING = "The transformers engine needs the reference extra: pip install -e .[reference]."
_DEFAULT_MAX_LENGTH = 2048  # lm-eval's fallback when neither config nor tokenizer says
_SEQLEN_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx")


def _reference_modules():
    """torch and transformers, or a user error that says how to install them."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise UserError(_MISSING) from exc
    return torch, transformers


def _max_length(config, tokenizer) -> int:
    """The model's context length, looked up where lm-eval looks (text config first)."""
    for cfg in (getattr(config, "text_config", None), config):
        for attr in _SEQLEN_ATTRS:
            value = getattr(cfg, attr, None) if cfg is not None else None
            if isinstance(value, int) and value > 0:
                return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000_000:
        return limit
    return _DEFAULT_MAX_LENGTH


class TransformersEngine:
    """transformers on CPU, float32: loglikelihood and greedy generation as lm-eval runs them."""

    def __init__(self, model: ModelFile, n_threads: int | None = None, seed: int = 1234,
                 batch_size: int = 8) -> None:
        torch, transformers = _reference_modules()
        self._torch = torch
        self.model_file = model
        self.facts = gguf_facts(model.file)  # rejects a corrupt file with a clear message
        self.seed, self.batch_size = seed, max(1, batch_size)
        if n_threads:
            torch.set_num_threads(n_threads)
        self.n_threads = torch.get_num_threads()
        torch.manual_seed(seed)
        folder, name = str(model.file.parent), model.file.name
        t0 = time.perf_counter()
        try:
            # local_files_only: nothing is ever fetched from the hub for a local file
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                folder, gguf_file=name, local_files_only=True)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(
                folder, gguf_file=name, torch_dtype=torch.float32, local_files_only=True)
        except (ValueError, OSError, KeyError, RuntimeError) as exc:
            raise UserError(f"transformers could not load {model.path} ({exc}).") from exc
        if model.adapter is not None:
            self.model = _with_adapter(self.model, model)
        self.model.eval()
        self.load_ms = (time.perf_counter() - t0) * 1000
        tok = self.tokenizer
        self.prefix_token = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        self._prefix_text = tok.decode(self.prefix_token)
        self.max_length = _max_length(self.model.config, tok)
        self.pad_id = next((t for t in (tok.pad_token_id, tok.unk_token_id, tok.eos_token_id)
                            if t is not None), 0)
        self.eos_text = tok.decode(tok.eos_token_id, skip_special_tokens=False) \
            if tok.eos_token_id is not None else None

    # -- tokens -----------------------------------------------------------------------------

    def tokenize(self, text: str, add_special: bool | None = None) -> list[int]:
        """The GGUF-rebuilt tokenizer, called as lm-eval calls it.

        `None` keeps the tokenizer's own default for special tokens, except that a text which
        already starts with the BOS text does not get a second one.
        """
        if add_special is None and text.startswith(self._prefix_text):
            add_special = False
        kwargs = {} if add_special is None else {"add_special_tokens": add_special}
        return self.tokenizer.encode(text, **kwargs)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation tokens, split as lm-eval's HFLM splits them."""
        if context == "":
            cont = self.tokenize(continuation, add_special=False)
            if not cont:
                raise UserError(f"The continuation {continuation!r} tokenizes to nothing.")
            if cont[0] == self.prefix_token:
                return cont[:1], cont[1:]
            return [self.prefix_token], cont
        n_space = len(context) - len(context.rstrip())
        if n_space:
            continuation = context[-n_space:] + continuation
            context = context[:-n_space]
        whole = self.tokenize(context + continuation)
        ctx = self.tokenize(context)
        if len(ctx) >= len(whole):
            raise UserError(f"The continuation {continuation!r} tokenizes to nothing after its context.")
        return ctx, whole[len(ctx):]

    # -- loglikelihood ----------------------------------------------------------------------

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        """Score every request as its own sequence (no shared prefix), in batches."""
        torch = self._torch
        encoded = [self.encode_pair(r.context, r.continuation) for r in requests]
        inputs = [(ctx + cont)[-(self.max_length + 1):][:-1] for ctx, cont in encoded]
        # longest first, as lm-eval orders them, so a batch pads little
        order = sorted(range(len(requests)), key=lambda i: -len(inputs[i]))
        results: list[LoglikelihoodResult | None] = [None] * len(requests)
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            width = max(len(inputs[i]) for i in idx)
            batch = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                batch[row, :len(inputs[i])] = torch.tensor(inputs[i], dtype=torch.long)
            t0 = time.perf_counter()
            with torch.no_grad():
                logprobs = torch.log_softmax(self.model(batch).logits, dim=-1)
            ms = (time.perf_counter() - t0) * 1000
            n_batch_tokens = sum(len(inputs[i]) for i in idx)
            for row, i in enumerate(idx):
                cont = encoded[i][1]
                n = len(inputs[i])
                rows = logprobs[row, n - len(cont):n]
                target = torch.tensor(cont, dtype=torch.long)
                picked = rows.gather(1, target.unsqueeze(-1)).squeeze(-1)
                results[i] = LoglikelihoodResult(
                    logprob=float(picked.sum()),
                    n_tokens=len(cont),
                    is_greedy=bool((rows.argmax(dim=-1) == target).all()),
                    eval_tokens=float(n),
                    ms=ms * n / n_batch_tokens,
                )
        return [r for r in results if r is not None]

    # -- generation -------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Greedy generation, one request at a time (no padding, so no batch effects)."""
        return [self._generate_one(r) for r in requests]

    def _generate_one(self, req: GenerationRequest) -> GenerationResult:
        torch = self._torch
        stops = [u for u in req.until if u]
        if self.eos_text and self.eos_text not in stops:
            stops.append(self.eos_text)  # lm-eval adds the EOS text to every stop list
        budget = max(1, req.max_tokens)
        prompt = self.tokenize(req.prompt)[-max(1, self.max_length - budget):]
        ids = torch.tensor([prompt], dtype=torch.long)
        watch = _StopWatch(self.tokenizer, stops, len(prompt))
        t0 = time.perf_counter()
        watch.t0 = t0
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids),
                max_length=len(prompt) + budget, do_sample=False, use_cache=True,
                stopping_criteria=[watch], pad_token_id=self.pad_id,
                output_scores=True, return_dict_in_generate=True,
            )
        t_end = time.perf_counter()
        new = out.sequences[0, len(prompt):].tolist()
        eos_ids = self._eos_ids()
        n_out = len(new) - (1 if new and new[-1] in eos_ids else 0)
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        cuts = [text.find(u) for u in stops if u in text]
        if cuts:
            text, stop_reason = text[:min(cuts)], "until"
        elif new and new[-1] in eos_ids:
            stop_reason = "eos"
        else:
            stop_reason = "length"
        lps = [float(torch.log_softmax(score[0], dim=-1)[tok])
               for score, tok in zip(out.scores, new)]
        ttft = (watch.first_token - t0) * 1000 if watch.first_token else (t_end - t0) * 1000
        return GenerationResult(
            text=text,
            prompt_tokens=len(prompt),
            gen_tokens=n_out,
            prefill_ms=ttft,  # the first forward pass is the prefill, plus one argmax
            decode_ms=(t_end - t0) * 1000 - ttft,
            ttft_ms=ttft,
            wall_ms=(t_end - t0) * 1000,
            stop_reason=stop_reason,
            mean_logprob=sum(lps) / len(lps) if lps else None,
        )

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    # -- facts ------------------------------------------------------------------------------

    def info(self) -> EngineInfo:
        """Model and engine facts for the signature."""
        f = self.facts
        return EngineInfo(
            engine="transformers",
            engine_version=f"transformers {version('transformers')}; torch {version('torch')}",
            model_name=self.model_file.name,
            model_path=str(self.model_file.path),
            model_sha256=f.sha256,
            architecture=f.architecture,
            file_type=f.file_type,
            tensor_types=f.tensor_types_label,
            n_params=f.n_params,
            size_bytes=f.size_bytes,
            n_threads=self.n_threads,
            n_ctx=self.max_length,
            n_batch=self.batch_size,
            scoring="full",  # every request is its own sequence, as in lm-eval
            seed=self.seed,
            load_ms=self.load_ms,
            extra={"dtype": "float32 (dequantized GGUF)",
                   "tokenizer": type(self.tokenizer).__name__,
                   "bos_prefix_token": str(self.prefix_token),
                   "omp_threads": os.environ.get("OMP_NUM_THREADS", ""),
                   **({"adapter_sha256": str(self.model_file.adapter_sha256),
                       "adapter_scale": str(self.model_file.adapter_scale),
                       "adapter_task": str(self.model_file.adapter_task)}
                      if self.model_file.adapter is not None else {})},
        )

    def close(self) -> None:
        """Drop the model (idempotent); torch frees the memory."""
        self.model = None

    def __enter__(self) -> "TransformersEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _with_adapter(model, model_file: ModelFile):
    """The model with the PEFT weights an adapter GGUF was exported from (kept beside it)."""
    folder = model_file.adapter_peft
    try:
        import peft
    except ImportError as exc:
        raise UserError(_MISSING) from exc
    if folder is None or not folder.is_dir():
        raise UserError(f"The adapter {model_file.adapter} has no PEFT copy at {folder}; run "
                        "`iberlite adapt` again to make it.", 2)
    if model_file.adapter_scale != 1.0:
        raise UserError("The transformers engine applies adapters at scale 1 only.", 2)
    return peft.PeftModel.from_pretrained(model, str(folder))


class _StopWatch:
    """Stopping criterion: stop once the raw generated text (special tokens included, as
    lm-eval decodes it for this check) contains a stop string; it also notes when the first
    token arrived, which is the time to first token."""

    def __init__(self, tokenizer, stops: list[str], prompt_len: int) -> None:
        self.tokenizer, self.stops, self.prompt_len = tokenizer, stops, prompt_len
        self.t0 = 0.0
        self.first_token: float | None = None

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        if self.first_token is None:
            self.first_token = time.perf_counter()
        raw = self.tokenizer.decode(input_ids[0, self.prompt_len:], skip_special_tokens=False)
        done = any(s in raw for s in self.stops)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool)
