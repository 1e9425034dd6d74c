"""Overhead of the Monitor on a plain training step, next to torch.autograd.detect_anomaly.

Plain, monitored and anomaly-mode steps are interleaved in one process (round-robin blocks of ~0.2 s, the
order reversed every other round; ``--rounds`` rounds, more within ~20 s of CPU per model), on an MLP, a
CNN with batch-norm and a small transformer, CPU. Every step is timed. Prints, for ``Monitor(model,
optimizer)`` and for ``Monitor()`` (what ``nndoctor run`` uses): the typical step over the plain one (the
median of all steps of each kind: a step another job preempted is an outlier, not a cost), and in brackets
the median over the rounds of each block's mean step over the plain block of the same round with its
interquartile range (a machine shared with other jobs slows whole seconds, which divide out of a round).
The first ``WARM`` steps of each monitored block and its 32nd (a run's one-off readings) are not counted.
Times are CPU time of one thread (``torch.set_num_threads(1)``, ``time.thread_time``), which such jobs
disturb far less than the wall clock; glibc keeps freed memory (``steady_allocator``). Then the fixed cost
per step in microseconds: on a model so small that a step is mostly overhead, the fastest block of each kind.

``--memory`` adds the Monitor's extra peak memory on a ~100M-parameter model (CPU), two ways: the bytes of
tensors reachable from the watchers after the first steps, and the growth of the process's peak resident
memory (``ru_maxrss``) from plain steps to monitored steps, in a fresh process.

    python bench/bench_monitor.py [--steps 30] [--rounds 9] [--memory] [--no-pin]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

from nndoctor import Monitor


def mlp():
    return nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)), \
        torch.randn(128, 256), torch.randint(0, 10, (128,))


def cnn():
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(64, 10))
    return model, torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))


class Transformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(1000, 128)
        layer = nn.TransformerEncoderLayer(128, 4, 256, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 4)
        self.out = nn.Linear(128, 10)

    def forward(self, x):
        return self.out(self.enc(self.emb(x)).mean(1))


def transformer():
    return Transformer(), torch.randint(0, 1000, (32, 32)), torch.randint(0, 10, (32,))


def timed_steps(model, opt, x, y, steps: int) -> float:
    return statistics.fmean(step_times(model, opt, x, y, steps))


def step_times(model, opt, x, y, steps: int) -> list[float]:
    """Each step's CPU time (two clock reads per step, the same for every kind)."""
    loss_fn, times, clock = nn.CrossEntropyLoss(), [], time.thread_time
    for _ in range(steps):
        t0 = clock()
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        times.append(clock() - t0)
    return times


WARM = 8  # monitored steps not timed in each block, nor step 32: a run's one-off readings (parameter
# statistics of the first steps, the update-size samples of steps 8 and 32; the next is at step 128) are not
# its per-step cost
SAMPLE = 32  # the monitored step that copies the weights to measure the update size (lr_schedule.py)


def block(kind: str, model, opt, x, y, steps: int) -> list[float]:
    """The step times of one block of ``steps`` timed steps of this kind."""
    if kind == "plain":
        return step_times(model, opt, x, y, steps)
    if kind == "detect_anomaly":
        with torch.autograd.detect_anomaly(check_nan=True):
            return step_times(model, opt, x, y, steps)
    with Monitor(model, opt) if kind == "monitor" else Monitor():  # Monitor(): every module and optimizer, as `nndoctor run`
        times = step_times(model, opt, x, y, WARM + steps + (WARM + steps >= SAMPLE))[WARM:]
    return times[:SAMPLE - 1 - WARM] + times[SAMPLE - WARM:] if len(times) > steps else times


def bench(name, build, steps: int, rounds: int) -> None:
    torch.manual_seed(0)
    model, x, y = build()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    timed_steps(model, opt, x, y, 5)  # warm-up
    steps = max(5, min(steps, round(0.2 / timed_steps(model, opt, x, y, 3))))  # blocks of ~0.2 s: many short rounds
    kinds = ("plain", "monitor", "run", "detect_anomaly")
    blocks: dict[str, list[list[float]]] = {k: [] for k in kinds}
    start, r = time.thread_time(), 0
    while r < rounds or (r < 4 * rounds and time.thread_time() - start < 20):  # small models: more rounds, ~20 s
        for kind in kinds if r % 2 == 0 else kinds[::-1]:  # each kind as often first as last: a drift cancels
            blocks[kind].append(block(kind, model, opt, x, y, steps))
        r += 1
    # The typical step: the median of every step of a kind (a step another job preempted is an outlier, not a
    # cost), over the plain one. Then each block's mean against the plain block of its own round (a busy
    # second divides out), the median of those ratios and their interquartile range.
    typical = {k: statistics.median([t for b in blocks[k] for t in b]) for k in kinds}
    means = {k: [statistics.fmean(b) for b in blocks[k]] for k in kinds}
    ratios = {k: sorted(t / p for t, p in zip(means[k], means["plain"])) for k in kinds[1:]}

    def shown(k: str) -> str:
        r = ratios[k]
        return (f"{typical[k] / typical['plain']:5.2f}x (blocks {statistics.median(r):.2f}x "
                f"[{r[len(r) // 4]:.2f}-{r[-1 - len(r) // 4]:.2f}])")

    print(f"{name:<12} plain {typical['plain'] * 1e3:7.2f} ms/step   Monitor {shown('monitor')}   "
          f"Monitor() {shown('run')}   detect_anomaly {typical['detect_anomaly'] / typical['plain']:5.2f}x")


def fixed_cost(rounds: int) -> None:
    """Microseconds the Monitor adds to one step, on a model whose step is almost all Python overhead."""
    torch.manual_seed(0)
    model, x, y = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)), torch.randn(4, 8), torch.randint(0, 2, (4,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    timed_steps(model, opt, x, y, 20)
    best = {"plain": [], "monitor": [], "run": []}
    for _ in range(max(3, rounds * 4)):
        for kind in best:
            best[kind].append(statistics.fmean(block(kind, model, opt, x, y, 100)))
    plain = min(best["plain"])
    print(f"{'fixed cost':<12} plain {plain * 1e6:7.0f} us/step   Monitor +{(min(best['monitor']) - plain) * 1e6:.0f} us"
          f"   Monitor() +{(min(best['run']) - plain) * 1e6:.0f} us per step")


def big_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """~100.7M parameters (six 4096x4096 layers), a batch of 8."""
    layers = [m for _ in range(6) for m in (nn.Linear(4096, 4096), nn.ReLU())]
    return nn.Sequential(*layers[:-1]), torch.randn(8, 4096), torch.randint(0, 4096, (8,))


def watcher_tensor_bytes(monitor, exclude: set[int]) -> int:
    """Bytes of the tensors reachable from the watchers' own state (their attributes, containers and plain
    objects, not functions or modules), the model's parameters and gradients (``exclude``: storage
    pointers) left out. The last training batch, kept for a replay, counts."""
    seen, stack, total, storages = set(), [w.__dict__ for w in monitor.watchers], 0, set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen or not isinstance(obj, (dict, list, tuple, set, torch.Tensor)) and \
                not hasattr(obj, "__dict__") or isinstance(obj, (nn.Module, torch.optim.Optimizer, type)) or callable(obj):
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            ptr = obj.untyped_storage().data_ptr()
            if ptr not in exclude and ptr not in storages:
                storages.add(ptr)
                total += obj.untyped_storage().nbytes()
            continue
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set)):
            stack.extend(obj)
        else:
            stack.append(vars(obj))
    return total


def memory_child() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, x, y = big_model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    timed_steps(model, opt, x, y, 3)  # parameters, gradients and activations at their steady peak
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with Monitor() as mon:
        timed_steps(model, opt, x, y, 4)
        exclude = {t.untyped_storage().data_ptr() for p in model.parameters() for t in (p, p.grad) if t is not None}
        held = watcher_tensor_bytes(mon, exclude)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"params": sum(p.numel() for p in model.parameters()), "param_bytes": param_bytes,
                      "held_bytes": held, "peak_rss_growth": after - before}))


def memory() -> None:
    out = subprocess.run([sys.executable, __file__, "--memory-child"], capture_output=True, text=True, timeout=600)
    if out.returncode:
        print("memory: failed", out.stderr[-2000:])
        return
    m = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{'memory':<12} {m['params'] / 1e6:.1f}M parameters ({m['param_bytes'] / 2**20:.0f} MiB): tensors the watchers "
          f"hold {m['held_bytes']} bytes; peak RSS growth under the Monitor {m['peak_rss_growth'] / 2**20:.1f} MiB "
          f"({100 * m['peak_rss_growth'] / m['param_bytes']:.2f}% of the parameters' bytes)")


def steady_allocator() -> bool:
    """Keep freed memory in the process (glibc's ``mallopt``; elsewhere nothing changes). By default glibc gives
    large freed blocks back to the system and page-faults them in again on the next step (a CNN's 4 MiB
    activations: a thousand faults per tensor), which made whole blocks 10-50% slower at random here. Pinned,
    every kind of step reuses its memory; the plain step gets faster too, so a ratio can only grow."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 * 2**20)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError, TypeError):
        return False


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--memory", action="store_true", help="also the extra peak memory on a ~100M-parameter model")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-pin", action="store_true", help="leave the memory allocator as it is")
    args = parser.parse_args()
    if args.memory_child:
        return memory_child()
    if not args.no_pin:
        print(f"allocator pinned (freed memory kept): {steady_allocator()}")
    for name, build in (("mlp", mlp), ("cnn-bn", cnn), ("transformer", transformer)):
        bench(name, build, args.steps, args.rounds)
    fixed_cost(args.rounds)
    if args.memory:
        memory()


if __name__ == "__main__":
    main()
