"""LoRA training on the CPU (transformers + PEFT), loss on the answer tokens only.

The loop is written out rather than handed to `transformers.Trainer` for three reasons the
user sees: the result is a function of the seed and the thread count only (no dropout, a fixed
example order, no data-loader workers); Ctrl-C stops at a step boundary and keeps a checkpoint
that the same command resumes from; and the output layer is applied only at the answer
positions, which matters on Gemma's 262k-entry vocabulary (the full logits of a batch would be
gigabytes for a handful of scored tokens).

Sequences are the device's own token ids (see `adapt/tokens.py`), so the adapter learns the
sequences llama.cpp will evaluate, BOS convention included.
"""

from __future__ import annotations

import random
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from iberlite.errors import UserError
from iberlite.run.interrupt import check, stop_between_chunks

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_MISSING = "Adapting needs the reference extra (torch, transformers, peft): pip install -e .[reference]."


@dataclass(frozen=True)
class TrainConfig:
    """The hyper-parameters that define an adapter (all of them are in its cache key)."""

    rank: int = 8
    alpha: float = 16.0
    epochs: int = 1
    lr: float = 2e-4
    batch_size: int = 8
    seed: int = 0
    max_tokens: int = 512  # longer sequences lose their oldest context tokens
    targets: tuple[str, ...] = TARGET_MODULES

    @property
    def scale(self) -> float:
        """alpha / rank: how PEFT (without rsLoRA) and llama.cpp both scale B @ A."""
        return self.alpha / self.rank

    def key_dict(self) -> dict:
        """The config as it enters the cache key."""
        return {**asdict(self), "targets": list(self.targets)}


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


def _batch_loss(torch, base, pairs: Sequence[tuple[list[int], list[int]]], pad_id: int):
    """Mean cross-entropy over the answer tokens of a right-padded batch."""
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
    hidden = base.model(input_ids=ids, attention_mask=mask).last_hidden_state
    logits = base.lm_head(hidden[torch.tensor(rows), torch.tensor(cols)])
    cap = getattr(base.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return torch.nn.functional.cross_entropy(logits.float(), torch.tensor(targets))


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
    """
    torch, _ = reference_modules()
    if config.rank < 1 or config.epochs < 1 or config.batch_size < 1:
        raise UserError("Rank, epochs and batch size must be at least 1.", 2)
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

    with stop_between_chunks():
        for step in range(start, len(steps)):
            try:
                check()
            except KeyboardInterrupt:
                save(step)
                raise TrainingInterrupted(step, len(steps), checkpoint) from None
            for group in optim.param_groups:  # linear decay to zero over the run
                group["lr"] = config.lr * (1 - step / len(steps))
            loss = _batch_loss(torch, base, [cut[i] for i in steps[step]], pad_id)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            losses.append(loss.item())
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
        resumed_from=start,
    )
