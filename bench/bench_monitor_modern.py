"""Monitor overhead on today's training steps: eager, ``torch.compile``d and under bf16 autocast, each next to
the same plain loop. A small GPT-style block stack (attention through ``scaled_dot_product_attention``),
AdamW, gradient clipping, CPU, one thread.

Plain and monitored blocks of steps are interleaved round-robin in one process; printed: the median step
time of the plain loop and the ratio of medians for ``Monitor(model, optimizer)`` and ``Monitor()`` (what
``nndoctor run`` uses). Times are the thread's CPU time (``time.thread_time``): other jobs on a shared
machine disturb it far less than the wall clock. The compiled variant uses inductor when it compiles here
within ``--compile-budget`` seconds, else aot_eager (printed).

    python bench/bench_monitor_modern.py [--steps 20] [--rounds 5] [--compile-budget 60]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from nndoctor import Monitor


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for z in self.qkv(self.ln1(x)).split(d, dim=2))
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab=256, d=128, layers=4, heads=4, block=64):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(block, d)
        self.blocks = nn.ModuleList([Block(d, heads) for _ in range(layers)])
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


def make_step(model, opt, autocast: bool):
    def step(x, y):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return step


def timed(step, x, y, steps: int) -> float:
    t0 = time.thread_time()
    for _ in range(steps):
        step(x, y)
    return (time.thread_time() - t0) / steps


def interleaved(timer, step, model, opt, x, y, steps: int, rounds: int, others=None) -> dict[str, float]:
    """Median seconds per step of the plain loop, ``Monitor(model, opt)``, ``Monitor()`` and each of ``others``
    (name -> another plain step), their blocks interleaved round-robin; ``timer(step, x, y, n)`` times n steps."""
    others = others or {}
    results = {name: [] for name in ("plain", *others, "monitor", "run")}
    for _ in range(rounds):
        results["plain"].append(timer(step, x, y, steps))
        for name, other in others.items():
            results[name].append(timer(other, x, y, steps))
        with Monitor(model, opt):
            timer(step, x, y, 2)  # a Monitor's first steps take one-off readings (and may recompile)
            results["monitor"].append(timer(step, x, y, steps))
        with Monitor():
            timer(step, x, y, 2)
            results["run"].append(timer(step, x, y, steps))
    return {name: statistics.median(times) for name, times in results.items()}


def pick_backend(budget: float) -> str:
    """inductor when a step compiles within the budget (it needs a C++ compiler), else aot_eager."""
    torch.manual_seed(0)
    model = TinyGPT()
    compiled = torch.compile(model, backend="inductor")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, 256, (8, 64))
    t0 = time.monotonic()
    try:
        make_step(compiled, opt, False)(x, x)
    except Exception as exc:  # no compiler, an unsupported op
        print(f"inductor failed ({type(exc).__name__}: {str(exc)[:120]}): using aot_eager")
        return "aot_eager"
    took = time.monotonic() - t0
    if took > budget:
        print(f"inductor took {took:.0f} s to compile (over {budget:.0f} s): using aot_eager")
        return "aot_eager"
    print(f"inductor compiled in {took:.0f} s")
    return "inductor"


def bench(name: str, steps: int, rounds: int, *, backend: str | None = None, autocast: bool = False) -> None:
    torch.manual_seed(0)
    model = TinyGPT()
    run_model = torch.compile(model, backend=backend) if backend else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    step = make_step(run_model, opt, autocast)
    x, y = torch.randint(0, 256, (8, 64)), torch.randint(0, 256, (8, 64))
    timed(step, x, y, 3)  # warm-up (and compilation)
    medians = interleaved(timed, step, model, opt, x, y, steps, rounds)
    plain = medians["plain"]
    mon, run = medians["monitor"] / plain, medians["run"] / plain
    print(f"{name:<22} plain {plain * 1e3:7.2f} ms/step   Monitor {mon:5.2f}x   Monitor() {run:5.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compile-budget", type=float, default=60.0)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench("eager", args.steps, args.rounds)
    bench("eager + bf16 autocast", args.steps, args.rounds, autocast=True)
    if not args.no_compile:
        backend = pick_backend(args.compile_budget)
        bench(f"compiled ({backend})", args.steps, args.rounds, backend=backend)


if __name__ == "__main__":
    main()
