"""The Monitor on a GPU: overhead next to the plain loop, and the extra peak memory on a ~100M-parameter model.

Overhead: the bench models of ``bench_monitor.py`` (MLP, CNN with BatchNorm, transformer) at their small
sizes, where a step is a few kernel launches and the Python around them is all that costs (the worst case
for any hook), then a GPT-style stack (``bench_monitor_modern.TinyGPT``, ~70M parameters) at a size where
the GPU does the work: eager fp32, bf16 autocast, float16 autocast with a GradScaler, and ``torch.compile``
(inductor). Plain and monitored blocks of steps are interleaved round-robin in one process; each block ends with
``torch.cuda.synchronize()`` and is timed by the wall clock; printed: the plain median ms/step and the ratio
of medians for ``Monitor(model, optimizer)``, ``Monitor()`` (what ``nndoctor run`` uses) and the plain loop
with one synchronisation per step (what a loop that logs ``loss.item()`` every step pays).

Memory: ``torch.cuda.max_memory_allocated`` over training steps of a ~100.7M-parameter MLP, plain and under
``Monitor()``; the growth is the Monitor's extra peak, as a share of the parameters' bytes (goal < 1%).

    python bench/bench_gpu.py [--steps 30] [--rounds 5] [--no-compile]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_monitor import big_model, cnn, mlp, transformer
from bench_monitor_modern import TinyGPT, interleaved

from nndoctor import Monitor

DEV = "cuda"


def GPT() -> nn.Module:
    return TinyGPT(vocab=8192, d=768, layers=8, heads=12, block=512)


def classifier_step(model, opt):
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return step


def gpt_step(model, opt, dtype: torch.dtype | None, scaler: torch.amp.GradScaler | None):
    def step(x, y):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(DEV, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), y.view(-1))
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
    return step


def timed(step, x, y, steps: int) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def compare(name: str, model: nn.Module, opt, step, x, y, steps: int, rounds: int) -> None:
    timed(step, x, y, 3)  # warm-up (and compilation)

    def synced(x, y):  # the plain loop reading one number per step, as `loss.item()` logging does
        step(x, y)
        torch.cuda.synchronize()

    medians = interleaved(timed, step, model, opt, x, y, steps, rounds, others={"sync": synced})
    plain = medians["plain"]
    mon, run, sync = (medians[k] / plain for k in ("monitor", "run", "sync"))
    print(f"{name:<30} plain {plain * 1e3:8.2f} ms/step   Monitor {mon:5.2f}x   Monitor() {run:5.2f}x   "
          f"plain + a sync per step {sync:5.2f}x", flush=True)


def small_models(steps: int, rounds: int) -> None:
    for name, build in (("mlp", mlp), ("cnn-bn", cnn), ("transformer", transformer)):
        torch.manual_seed(0)
        model, x, y = build()
        model, x, y = model.to(DEV), x.to(DEV), y.to(DEV)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        compare(f"{name} (launch-bound)", model, opt, classifier_step(model, opt), x, y, steps, rounds)


def gpt(steps: int, rounds: int, compile_model: bool) -> None:
    variants = [("gpt fp32", None, False, False), ("gpt bf16 autocast", torch.bfloat16, False, False),
                ("gpt fp16 + GradScaler", torch.float16, True, False)]
    if compile_model:
        variants.append(("gpt bf16 compiled", torch.bfloat16, False, True))
    print(f"gpt: {sum(p.numel() for p in GPT().parameters()) / 1e6:.0f}M parameters, batch 16 x 512 tokens", flush=True)
    for name, dtype, scaled, compiled in variants:
        torch.manual_seed(0)
        model = GPT().to(DEV)
        run_model = torch.compile(model) if compiled else model
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=True)
        scaler = torch.amp.GradScaler(DEV) if scaled else None
        x = torch.randint(0, 8192, (16, 512), device=DEV)
        try:
            compare(name, model, opt, gpt_step(run_model, opt, dtype, scaler), x, x, steps, rounds)
        except Exception as exc:  # noqa: BLE001 - a backend that does not compile here: say so, keep the other rows
            print(f"{name:<30} failed: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
        del model, run_model, opt


def memory() -> None:
    torch.manual_seed(0)
    model, x, y = big_model()
    model, x, y = model.to(DEV), x.to(DEV), y.to(DEV)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    step = classifier_step(model, opt)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    timed(step, x, y, 3)
    torch.cuda.reset_peak_memory_stats()
    timed(step, x, y, 4)
    plain = torch.cuda.max_memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with Monitor():
        timed(step, x, y, 4)
    monitored = torch.cuda.max_memory_allocated()
    extra = monitored - plain
    print(f"{'memory':<30} {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters "
          f"({param_bytes / 2**20:.0f} MiB): peak {plain / 2**20:.0f} MiB plain, {monitored / 2**20:.0f} MiB under "
          f"Monitor(): +{extra / 2**20:.2f} MiB ({100 * extra / param_bytes:.3f}% of the parameters' bytes)",
          flush=True)


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu: no CUDA device")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    memory()
    small_models(args.steps, args.rounds)
    gpt(max(5, args.steps // 3), args.rounds, not args.no_compile)


if __name__ == "__main__":
    main()
