"""LoRA training on the CPU (transformers + PEFT), loss on the answer tokens only.

The loop is written out rather than handed to `transformers.Trainer` for three reasons the
user sees: the result is a function of the seed, the thread count and the precision only (no
dropout, a fixed example order, no data-loader workers); Ctrl-C stops at a step boundary and
keeps a checkpoint that the same command resumes from; and the output layer is applied only at the answer
positions, which matters on Gemma's 262k-entry vocabulary (the full logits of a batch would be
gigabytes for a handful of scored tokens).

Sequences are the device's own token ids (see `adapt/tokens.py`), so the adapter learns the
sequences llama.cpp will evaluate, BOS convention included.

Memory is bounded by a token budget rather than by the batch size: each step's batch runs as
micro-batches of at most `token_budget` padded tokens (`adapt/batches.py`) whose gradients
accumulate, each micro-batch's loss divided by the whole batch's answer tokens, so a step is
the step one unsplit batch would take (to float rounding). Where the CPU multiplies bf16 natively
(`adapt/precision.py`) the forward pass runs under bf16 autocast; the LoRA weights, their
gradients, AdamW's state and the loss stay fp32.
"""

from __future__ import annotations

import random
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from iberlite.adapt.batches import micro_batches
from iberlite.adapt.precision import this_cpu_precision
from iberlite.errors import UserError
from iberlite.run.interrupt import check, stop_between_chunks

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_MISSING = "Adapting needs the reference extra (torch, transformers, peft): pip install -e .[reference]."


@dataclass(frozen=True)
class TrainConfig:
    """How an adapter is trained. Everything that changes its weights is in its cache key; the
    token budget and gradient checkpointing change only memory and speed, so they are recorded
    but not keyed (the same request with another budget is the same adapter)."""

    rank: int = 8
    alpha: float = 16.0
    epochs: int = 2  # 2 epochs at lr 1e-3: the setting every measured curve used (docs/adapting.md)
    lr: float = 1e-3
    batch_size: int = 8
    seed: int = 0
    max_tokens: int = 512  # longer sequences lose their oldest context tokens
    targets: tuple[str, ...] = TARGET_MODULES
    # Padded tokens per forward pass: max_tokens, so no pass computes more than one full-length
    # sequence does, the worst case that any budget must allow (docs/adapting.md).
    token_budget: int = 512
    grad_checkpointing: bool = False  # recompute activations in backward: less memory, slower
    precision: str = "auto"  # "bf16" or "fp32"; "auto": bf16 where the CPU has it natively

    def resolved(self) -> "TrainConfig":
        """The config with "auto" precision replaced by this CPU's choice."""
        return replace(self, precision=this_cpu_precision(self.precision))

    @property
    def scale(self) -> float:
        """alpha / rank: how PEFT (without rsLoRA) and llama.cpp both scale B @ A."""
        return self.alpha / self.rank

    def key_dict(self) -> dict:
        """The config as it enters the cache key (precision resolved: bf16 and fp32 weights
        differ; neither budget nor checkpointing changes the maths)."""
        keyed = {**asdict(self.resolved()), "targets": list(self.targets)}
        del keyed["token_budget"], keyed["grad_checkpointing"]
        return keyed


@dataclass(frozen=True)
class StepInfo:
    """One finished optimizer step, for the progress bar."""

    step: int  # 1-based
    total: int
    loss: float
    examples_per_s: float
    eta_s: float


@dataclass(frozen=True)
class TrainResult:
    """What training did and what it cost (a one-off cost of the adapter)."""

    steps: int
    examples_seen: int
    first_loss: float
    final_loss: float  # mean over the last epoch's steps
    seconds: float  # training wall time, summed over resumed sessions
    cpu_seconds: float
    peak_rss_bytes: int
    examples_per_s: float
    n_trainable: int
    n_threads: int
    resumed_from: int  # step a checkpoint resumed from (0: fresh)
    precision: str  # "bf16" or "fp32": the forward pass's matmuls
    micro_batches: int  # forward/backward passes over the whole run (steps x their micro-batches)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: the checkpoint of the last finished step is kept."""

    def __init__(self, step: int, total: int, checkpoint: Path) -> None:
        super().__init__(f"training stopped at step {step}/{total}")
        self.step, self.total, self.checkpoint = step, total, checkpoint


def reference_modules():
    """torch and peft, or a user error that says how to install them."""
    try:
        import peft
        import torch
    except ImportError as exc:
        raise UserError(_MISSING) from exc
    return torch, peft


def thread_count(n_threads: int | None) -> int:
    """The threads training runs on: `n_threads`, else torch's default (what the adapter's key
    and record name, since the thread count changes the order of float sums)."""
    if n_threads:
        return n_threads
    try:
        import torch
    except ImportError as exc:
        raise UserError(_MISSING) from exc
    return torch.get_num_threads()


def schedule(n_examples: int, config: TrainConfig) -> list[list[int]]:
    """The example indices of every step: each epoch a fresh seeded shuffle, cut in batches."""
    steps: list[list[int]] = []
    for epoch in range(config.epochs):
        order = list(range(n_examples))
        random.Random(f"{config.seed}:{epoch}").shuffle(order)
        steps += [order[i:i + config.batch_size] for i in range(0, n_examples, config.batch_size)]
    return steps


def attach_lora(model, config: TrainConfig):
    """The model with fresh LoRA weights on the projections (never the tied embeddings)."""
    torch, peft = reference_modules()
    torch.manual_seed(config.seed)  # A's initialisation; B starts at zero
    lora = peft.LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0,
                           target_modules=list(config.targets), bias="none", task_type="CAUSAL_LM",
                           use_rslora=False)
    return peft.get_peft_model(model, lora)


def lora_state(peft_model) -> dict:
    """The trainable LoRA tensors (PEFT's names), detached on the CPU."""
    return {k: v.detach().clone() for k, v in peft_model.named_parameters() if v.requires_grad}


def load_lora(peft_model, folder: Path) -> None:
    """Put an earlier adapter's LoRA weights (its PEFT folder) into `peft_model`, to continue
    training from them; a folder that does not fill every LoRA tensor is a user error."""
    _, peft = reference_modules()
    from safetensors.torch import load_file

    try:
        state = load_file(str(folder / "adapter_model.safetensors"))
    except OSError as exc:
        raise UserError(f"Cannot read the adapter weights in {folder} ({exc}).", 2) from exc
    result = peft.set_peft_model_state_dict(peft_model, state)
    trainable = {k for k, v in peft_model.named_parameters() if v.requires_grad}
    if not state or result.unexpected_keys or trainable & set(result.missing_keys):
        raise UserError(f"The adapter weights in {folder} do not fit this model's LoRA layers.", 2)


def _answer_loss_sum(torch, base, pairs: Sequence[tuple[list[int], list[int]]], pad_id: int,
                     bf16: bool):
    """Summed fp32 cross-entropy over the answer tokens of a micro-batch, right-padded to its
    own longest sequence. bf16 autocast covers the decoder only: the output layer runs in fp32
    on the answer positions, so the loss is not rounded to bf16's 8 bits of mantissa."""
    width = max(len(c) + len(a) for c, a in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    rows, cols, targets = [], [], []
    for r, (ctx, ans) in enumerate(pairs):
        seq = ctx + ans
        ids[r, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[r, :len(seq)] = 1
        for j, tok in enumerate(ans):  # token at position p is predicted at p - 1
            rows.append(r)
            cols.append(len(ctx) + j - 1)
            targets.append(tok)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        hidden = base.model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
    logits = base.lm_head(hidden[torch.tensor(rows), torch.tensor(cols)].float())
    cap = getattr(base.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return torch.nn.functional.cross_entropy(logits, torch.tensor(targets), reduction="sum")


def accumulate_step(torch, base, batch: Sequence[tuple[list[int], list[int]]], token_budget: int,
                    pad_id: int, bf16: bool) -> tuple[float, int]:
    """Backward passes over one step's batch in micro-batches within `token_budget` padded
    tokens: leaves the whole batch's gradient in the parameters' `.grad` and returns the batch's
    mean answer-token loss and the number of passes. Each pass adds
    ``sum_ce(micro-batch) / answer_tokens(batch)``, so the sum is the unsplit batch's loss."""
    n_answer = sum(len(ans) for _, ans in batch)
    packed = micro_batches([len(ctx) + len(ans) for ctx, ans in batch], token_budget)
    total = 0.0
    for mb in packed:
        loss = _answer_loss_sum(torch, base, [batch[i] for i in mb], pad_id, bf16) / n_answer
        loss.backward()
        total += loss.item()
    return total, len(packed)


def _rusage() -> tuple[float, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_maxrss * 1024


def train_lora(peft_model, pairs: Sequence[tuple[list[int], list[int]]], config: TrainConfig, *,
               pad_id: int, checkpoint: Path, key: str,
               on_step: Callable[[StepInfo], None] | None = None,
               checkpoint_every: int = 10) -> TrainResult:
    """Train the LoRA weights of `peft_model` on (context ids, answer ids) pairs.

    A checkpoint (LoRA weights, optimizer state, step) is written every `checkpoint_every` steps
    and when Ctrl-C stops training at a step boundary; a checkpoint with the same `key` is
    resumed from, so an interrupted `adapt` continues where it stopped, to the same result.
    Each step is one optimizer step over its batch, computed as micro-batches within
    `config.token_budget` padded tokens.
    """
    torch, _ = reference_modules()
    if config.rank < 1 or config.epochs < 1 or config.batch_size < 1 or config.token_budget < 1:
        raise UserError("Rank, epochs, batch size and token budget must be at least 1.", 2)
    precision = config.resolved().precision
    cut = [(ctx[max(0, len(ctx) + len(ans) - config.max_tokens):], ans) for ctx, ans in pairs]
    if any(not ctx or not ans for ctx, ans in cut):
        raise UserError(f"An example does not fit in {config.max_tokens} tokens with its context.", 2)
    base = peft_model.get_base_model()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    steps = schedule(len(cut), config)
    start, losses, past_s, past_cpu = 0, [], 0.0, 0.0
    if checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=False)
        if saved.get("key") == key:
            named = dict(peft_model.named_parameters())
            with torch.no_grad():
                for k, v in saved["lora"].items():
                    named[k].copy_(v)
            optim.load_state_dict(saved["optim"])
            start, losses = saved["step"], list(saved["losses"])
            past_s, past_cpu = saved["seconds"], saved["cpu_seconds"]
    peft_model.train()
    t0, (cpu0, _) = time.perf_counter(), _rusage()
    done_examples = 0

    def save(step: int) -> None:
        tmp = checkpoint.with_name(checkpoint.name + ".part")
        torch.save({"key": key, "step": step, "lora": lora_state(peft_model),
                    "optim": optim.state_dict(), "losses": losses,
                    "seconds": past_s + time.perf_counter() - t0,
                    "cpu_seconds": past_cpu + _rusage()[0] - cpu0}, tmp)
        tmp.replace(checkpoint)

    with stop_between_chunks(), _gradient_checkpointing(base, config.grad_checkpointing):
        for step in range(start, len(steps)):
            try:
                check()
            except KeyboardInterrupt:
                save(step)
                raise TrainingInterrupted(step, len(steps), checkpoint) from None
            for group in optim.param_groups:  # linear decay to zero over the run
                group["lr"] = config.lr * (1 - step / len(steps))
            optim.zero_grad(set_to_none=True)
            loss, _ = accumulate_step(torch, base, [cut[i] for i in steps[step]], config.token_budget,
                                      pad_id, precision == "bf16")
            optim.step()
            losses.append(loss)
            done_examples += len(steps[step])
            elapsed = time.perf_counter() - t0
            rate = done_examples / elapsed if elapsed > 0 else 0.0
            left = sum(len(b) for b in steps[step + 1:])
            if on_step:
                on_step(StepInfo(step + 1, len(steps), losses[-1], rate, left / rate if rate else 0.0))
            if (step + 1) % checkpoint_every == 0 and step + 1 < len(steps):
                save(step + 1)
    peft_model.eval()
    cpu, rss = _rusage()
    elapsed = time.perf_counter() - t0
    per_epoch = max(1, len(steps) // config.epochs)
    return TrainResult(
        steps=len(steps), examples_seen=sum(len(b) for b in steps),
        first_loss=losses[0], final_loss=sum(losses[-per_epoch:]) / len(losses[-per_epoch:]),
        seconds=round(past_s + elapsed, 2), cpu_seconds=round(past_cpu + cpu - cpu0, 2),
        peak_rss_bytes=rss, examples_per_s=round(done_examples / elapsed, 3) if elapsed else 0.0,
        n_trainable=sum(p.numel() for p in params), n_threads=torch.get_num_threads(),
        resumed_from=start, precision=precision,
        micro_batches=sum(len(micro_batches([sum(map(len, cut[i])) for i in b], config.token_budget))
                          for b in steps),
    )


@contextmanager
def _gradient_checkpointing(base, enabled: bool) -> Iterator[None]:
    """Recompute each layer's activations in the backward pass instead of keeping them, for
    the duration of training only: however training ends, the model goes back to plain
    forward passes (the same engine may score items next). Non-reentrant checkpointing, which
    needs no input that requires grad (the base is frozen)."""
    if enabled:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        yield
    finally:
        if enabled:
            base.gradient_checkpointing_disable()
