"""Modular-arithmetic grokking with a tiny transformer, small enough for a CPU in seconds.

Usage: python experiment.py --out_dir=<dir> [--config=<config.json>]
config.json = {"seed": int, "params": {name: value}, "variant": str|null, "ablation": str|null}.
Writes <out_dir>/metrics.json (kubescientist.io/metrics/v1) and <out_dir>/curves.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")  # nodes have no display
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Every param the program reads, with its default. Variants and ablations in
# kubescientist.yaml only override these keys.
DEFAULTS: dict[str, Any] = {
    "lr": 1e-2,
    "weight_decay": 1.0,
    "d_model": 48,
    "num_heads": 4,
    "num_layers": 1,
    "steps": 400,
    "dropout": 0.1,
    "prime": 31,
    "train_fraction": 0.5,
    "positional": "learned",  # learned | rope | none
    "architecture": "transformer",  # transformer | mlp
    "layer_norm": True,
    "label_smoothing": 0.0,
    "warmup_steps": 10,
    "grad_clip": 1.0,  # max gradient norm; 0 turns clipping off
}
POSITIONAL_KINDS = ("learned", "rope", "none")
ARCHITECTURES = ("transformer", "mlp")

# The two "datasets": one binary operation each, on residues mod p.
OPERATIONS: dict[str, Callable[[int, int, int], int]] = {
    "x_plus_y": lambda a, b, p: (a + b) % p,
    "x_minus_y": lambda a, b, p: (a - b) % p,
}
DIRECTIONS = {
    "train_loss": "minimize",
    "train_accuracy": "maximize",
    "val_loss": "minimize",
    "val_accuracy": "maximize",
}
EVAL_POINTS = 40  # points per curve; enough to see the jump, small enough for metrics.json
SEQ_LEN = 3  # tokens: a, b, "="


def coerce(name: str, value: Any) -> Any:
    """Cast a config value to the type of its default (JSON/YAML may give 1e3 or "false")."""
    default = DEFAULTS[name]
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.lower() in ("true", "1", "yes"):
                return True
            if value.lower() in ("false", "0", "no"):
                return False
            raise ValueError(f"param {name}: expected a boolean, got {value!r}")
        return bool(value)
    if isinstance(default, int):
        if float(value) != int(float(value)):
            raise ValueError(f"param {name}: expected an integer, got {value!r}")
        return int(float(value))
    if isinstance(default, float):
        return float(value)
    return str(value)


def load_config(path: str | None) -> tuple[int, dict[str, Any], str | None, str | None]:
    """Read seed, params (defaults filled in), variant and ablation names."""
    raw: dict[str, Any] = {}
    if path:
        with open(path) as f:
            raw = json.load(f)
    params = dict(DEFAULTS)
    for name, value in (raw.get("params") or {}).items():
        if name not in DEFAULTS:
            # Ignored rather than fatal, so a config written for a changed program still runs.
            print(f"warning: unknown param {name!r} ignored", file=sys.stderr)
            continue
        params[name] = coerce(name, value)
    for name in ("steps", "d_model", "num_heads", "num_layers"):
        if params[name] < 1:
            raise ValueError(f"param {name}: must be at least 1")
    if params["prime"] < 2:
        raise ValueError("param prime: must be at least 2")
    if params["positional"] not in POSITIONAL_KINDS:
        raise ValueError(f"param positional: must be one of {POSITIONAL_KINDS}")
    if params["architecture"] not in ARCHITECTURES:
        raise ValueError(f"param architecture: must be one of {ARCHITECTURES}")
    if params["d_model"] % params["num_heads"] != 0:
        raise ValueError("param d_model: must be divisible by num_heads")
    if params["positional"] == "rope" and (params["d_model"] // params["num_heads"]) % 2:
        raise ValueError("rope needs an even head dimension (d_model / num_heads)")
    if not 0.0 < params["train_fraction"] < 1.0:
        raise ValueError("param train_fraction: must be in (0, 1)")
    return int(raw.get("seed") or 0), params, raw.get("variant"), raw.get("ablation")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_dataset(op: str, p: int, train_fraction: float, seed: int) -> tuple[torch.Tensor, ...]:
    """All p*p equations `a b =`, split at random into train and validation."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.flatten(), b.flatten()
    equals = torch.full_like(a, p)  # token id p is "=", after the p residues
    x = torch.stack([a, b, equals], dim=1)
    y = torch.tensor([OPERATIONS[op](int(i), int(j), p) for i, j in zip(a, b)])
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_train = int(round(train_fraction * len(x)))
    train, val = order[:n_train], order[n_train:]
    return x[train], y[train], x[val], y[val]


def rotate(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of (batch, heads, seq, head_dim): rotates feature pairs by position."""
    half = x.shape[-1] // 2
    freqs = 1.0 / (10000.0 ** (torch.arange(half, dtype=x.dtype) / half))
    angles = positions.to(x.dtype)[:, None] * freqs[None, :]
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def norm(d: int, enabled: bool) -> nn.Module:
    return nn.LayerNorm(d) if enabled else nn.Identity()


class Block(nn.Module):
    """Pre-norm transformer block: self-attention then a 4x MLP, both residual."""

    def __init__(self, d: int, heads: int, dropout: float, layer_norm: bool, rope: bool) -> None:
        super().__init__()
        self.heads, self.rope = heads, rope
        self.attention_dropout = nn.Dropout(dropout)
        self.norm1, self.norm2 = norm(d, layer_norm), norm(d, layer_norm)
        self.query = nn.Linear(d, d)
        self.key_value = nn.Linear(d, 2 * d)
        self.proj = nn.Linear(d, d)
        self.mlp = nn.Sequential(
            nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(dropout)
        )

    def split_heads(self, t: torch.Tensor) -> torch.Tensor:
        batch, seq, d = t.shape
        return t.view(batch, seq, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, last_only: bool) -> torch.Tensor:
        seq = x.shape[1]
        h = self.norm1(x)
        k, v = (self.split_heads(t) for t in self.key_value(h).split(x.shape[-1], dim=-1))
        if last_only:
            # Only the "=" position is read out after the last block: computing the others is waste
            # (this program must stay within seconds on a CPU).
            x, h = x[:, -1:], h[:, -1:]
        q = self.split_heads(self.query(h))
        if self.rope:
            positions = torch.arange(seq)
            q, k = rotate(q, positions[seq - q.shape[2] :]), rotate(k, positions)
        # No causal mask: the "=" position may see both operands. With 3 tokens, broadcasting is
        # about twice as cheap on CPU as the batched-matmul attention kernels.
        scores = (q[:, :, :, None, :] * k[:, :, None, :, :]).sum(-1) / math.sqrt(q.shape[-1])
        weights = self.attention_dropout(scores.softmax(-1))
        attended = (weights[..., None] * v[:, :, None, :, :]).sum(-2)
        x = x + self.proj(attended.transpose(1, 2).flatten(2))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    def __init__(self, p: int, params: dict[str, Any]) -> None:
        super().__init__()
        d = params["d_model"]
        self.token = nn.Embedding(p + 1, d)
        # Without any positional signal the model sees {a, b} as a set, so it cannot tell a-b from b-a.
        learned = params["positional"] == "learned"
        self.position = nn.Parameter(0.02 * torch.randn(SEQ_LEN, d)) if learned else None
        rope = params["positional"] == "rope"
        self.blocks = nn.ModuleList(
            Block(d, params["num_heads"], params["dropout"], params["layer_norm"], rope)
            for _ in range(params["num_layers"])
        )
        self.final_norm = norm(d, params["layer_norm"])
        self.head = nn.Linear(d, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.token(x)
        if self.position is not None:
            h = h + self.position
        for i, block in enumerate(self.blocks):
            h = block(h, last_only=i == len(self.blocks) - 1)
        return self.head(self.final_norm(h[:, -1]))


class MLP(nn.Module):
    """Attention-free baseline: operand embeddings go straight into an MLP.

    With positional=none the two embeddings are summed (order-blind, like the transformer
    without positions); otherwise they are concatenated, so the slot carries the order.
    """

    def __init__(self, p: int, params: dict[str, Any]) -> None:
        super().__init__()
        d = params["d_model"]
        self.concat = params["positional"] != "none"
        self.token = nn.Embedding(p, d)
        width = 2 * d if self.concat else d
        layers: list[nn.Module] = [norm(width, params["layer_norm"]), nn.Linear(width, 4 * d), nn.GELU()]
        for _ in range(params["num_layers"] - 1):
            layers += [nn.Dropout(params["dropout"]), nn.Linear(4 * d, 4 * d), nn.GELU()]
        layers += [nn.Dropout(params["dropout"]), nn.Linear(4 * d, p)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.token(x[:, 0]), self.token(x[:, 1])
        return self.net(torch.cat([a, b], dim=-1) if self.concat else a + b)


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter), weight decay on every parameter.

    Written out rather than taken from torch.optim because an optimizer's first use there imports
    torch._dynamo: about 2 s of CPU, a fifth of this program's budget on a small core.
    """

    def __init__(
        self, params: list[nn.Parameter], weight_decay: float, betas: tuple[float, float], eps: float = 1e-8
    ) -> None:
        self.params = params
        self.weight_decay, self.betas, self.eps = weight_decay, betas, eps
        self.first = [torch.zeros_like(p) for p in params]
        self.second = [torch.zeros_like(p) for p in params]
        self.steps = 0

    @torch.no_grad()
    def step(self, lr: float) -> None:
        self.steps += 1
        beta1, beta2 = self.betas
        # Bias corrections for the zero-initialised moment estimates.
        correction1, correction2 = 1 - beta1**self.steps, 1 - beta2**self.steps
        for p, first, second in zip(self.params, self.first, self.second):
            if p.grad is None:
                continue
            p.mul_(1 - lr * self.weight_decay)
            first.lerp_(p.grad, 1 - beta1)
            second.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denominator = (second / correction2).sqrt_().add_(self.eps)
            p.addcdiv_(first, denominator, value=-lr / correction1)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Plain (unsmoothed) cross-entropy and accuracy, comparable across label smoothing."""
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = F.cross_entropy(logits, y).item()
        accuracy = (logits.argmax(-1) == y).float().mean().item()
    model.train()
    return loss, accuracy


def train(op: str, seed: int, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Full-batch AdamW on one operation; returns this dataset's metrics with curves."""
    seed_everything(seed)
    p = params["prime"]
    x_train, y_train, x_val, y_val = make_dataset(op, p, params["train_fraction"], seed)
    model: nn.Module = (Transformer if params["architecture"] == "transformer" else MLP)(p, params)
    # betas as in the original grokking work: a short second-moment memory helps the late jump.
    optimizer = AdamW(list(model.parameters()), params["weight_decay"], betas=(0.9, 0.98))
    warmup = max(1, params["warmup_steps"])

    steps = params["steps"]
    eval_every = math.ceil(steps / EVAL_POINTS)
    curves: dict[str, list[float]] = {name: [] for name in DIRECTIONS}
    eval_steps: list[int] = []
    started = time.perf_counter()
    for step in range(1, steps + 1):
        loss = F.cross_entropy(model(x_train), y_train, label_smoothing=params["label_smoothing"])
        optimizer.zero_grad()
        loss.backward()
        if params["grad_clip"] > 0:
            # Loss spikes are common late in grokking; clipping keeps one from undoing the jump.
            nn.utils.clip_grad_norm_(model.parameters(), params["grad_clip"])
        optimizer.step(params["lr"] * min(1.0, step / warmup))
        if step % eval_every == 0 or step == steps:
            train_loss, train_acc = evaluate(model, x_train, y_train)
            val_loss, val_acc = evaluate(model, x_val, y_val)
            if not all(math.isfinite(v) for v in (train_loss, val_loss)):
                raise FloatingPointError(f"{op}: loss diverged at step {step}")
            eval_steps.append(step)
            for name, value in zip(DIRECTIONS, (train_loss, train_acc, val_loss, val_acc)):
                curves[name].append(value)
            if len(eval_steps) % 5 == 0 or step == steps:
                print(
                    f"[{op}] step {step}/{steps} train_loss={train_loss:.4f} train_acc={train_acc:.3f} "
                    f"val_loss={val_loss:.4f} val_acc={val_acc:.3f} ({time.perf_counter() - started:.1f}s)",
                    flush=True,
                )

    return {
        name: {
            "final": values[-1],
            "best": max(values) if DIRECTIONS[name] == "maximize" else min(values),
            "direction": DIRECTIONS[name],
            "curve": {"step": eval_steps, "value": values},
        }
        for name, values in curves.items()
    }


def plot(datasets: dict[str, dict[str, dict[str, Any]]], path: str) -> None:
    """One row per dataset: accuracy on the left, loss (log scale) on the right."""
    fig, axes = plt.subplots(len(datasets), 2, figsize=(10, 3.2 * len(datasets)), squeeze=False)
    for row, (op, metrics) in zip(axes, datasets.items()):
        for ax, kind in zip(row, ("accuracy", "loss")):
            for split in ("train", "val"):
                curve = metrics[f"{split}_{kind}"]["curve"]
                ax.plot(curve["step"], curve["value"], label=split)
            ax.set_title(f"{op}: {kind}")
            ax.set_xlabel("step")
            if kind == "loss":
                ax.set_yscale("log")
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--config", default=None)
    args = parser.parse_args()
    seed, params, variant, ablation = load_config(args.config)
    # The model is tiny: extra threads cost more in sync than they gain, and nodes share cores.
    torch.set_num_threads(1)
    print(f"seed={seed} variant={variant} ablation={ablation}", flush=True)
    print(f"params={json.dumps(params, sort_keys=True)}", flush=True)

    os.makedirs(args.out_dir, exist_ok=True)
    datasets = {op: train(op, seed, params) for op in OPERATIONS}
    with open(os.path.join(args.out_dir, "metrics.json"), "w") as f:
        json.dump({"schema": "kubescientist.io/metrics/v1", "datasets": datasets}, f, indent=1)
    plot(datasets, os.path.join(args.out_dir, "curves.png"))
    for op, metrics in datasets.items():
        accuracy = metrics["val_accuracy"]
        print(f"{op}: final val_accuracy={accuracy['final']:.4f} best={accuracy['best']:.4f}")


if __name__ == "__main__":
    main()
