"""RUN004's fake-traced peak against measured peaks, for an MLP, a CNN and a small transformer.

For each model and three batch sizes, one Adam step is traced with fake tensors (``FakeStep``: nothing
is allocated; the time it took is printed) and compared with:
- the allocator's peak of a real step at that batch (on CPU from the profiler's allocation events, on
  CUDA from ``torch.cuda.max_memory_allocated``): the steady-state peak of ``measure_step``, and
- with ``--rss``, on CPU, an independent reading at the largest batch: the rise of the process's
  resident set during that step (sampled every 0.5 ms, after two warm-up steps), in a fresh subprocess
  where glibc returns large freed blocks to the system at once. Sampling can miss a spike shorter than
  that: a lower bound.
The last column extrapolates the largest batch's peak from traces at the two smaller batches
(``PeakModel``), as RUN004 finds the largest batch that fits.

Run: ``python bench/bench_memory.py [--device cuda] [--rss]``. Prints MiB and the estimate's error.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import threading
import time

import torch
from torch import nn

from nndoctor.probes.fake_memory import FakeStep
from nndoctor.probes.memory import MiB, PeakModel, measure_step, storage_bytes


class TinyTransformer(nn.Module):
    def __init__(self, vocab: int = 1000, dim: int = 256, layers: int = 4, length: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Parameter(torch.zeros(length, dim))
        layer = nn.TransformerEncoderLayer(dim, 4, 4 * dim, batch_first=True, dropout=0.1)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens) + self.position))  # (N, T, V)


def mlp():
    model = nn.Sequential(nn.Linear(784, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10))
    return model, lambda n: (torch.randn(n, 784), torch.randint(0, 10, (n,))), nn.functional.cross_entropy, 1024


def mlp_large_batch():
    """Small weights, huge batch: at small batches the update (gradients) sets the peak, at 4096 the activations."""
    model = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
    return model, lambda n: (torch.randn(n, 512), torch.randint(0, 10, (n,))), nn.functional.cross_entropy, 4096


def cnn():
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(128, 10))
    return model, lambda n: (torch.randn(n, 3, 64, 64), torch.randint(0, 10, (n,))), nn.functional.cross_entropy, 64


def transformer():
    def batch(n):
        tokens = torch.randint(0, 1000, (n, 64))
        return tokens, tokens

    def loss(logits, targets):
        return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())

    return TinyTransformer(), batch, loss, 64


MODELS = {"mlp": mlp, "mlp-big-batch": mlp_large_batch, "cnn": cnn, "transformer": transformer}


def build(name: str, device: torch.device):
    torch.manual_seed(0)
    model, make_batch, loss_fn, target = MODELS[name]()
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def batch(n):
        return tuple(t.to(device) for t in make_batch(n))

    def loss_of(m, b):
        return loss_fn(m(b[0]), b[1])

    return model, optimizer, batch, loss_of, target


SIZES = {"mlp": (256, 1024, 4096), "mlp-big-batch": (1024, 2048, 4096), "cnn": (16, 32, 64),
         "transformer": (16, 32, 64)}


def trace_and_measure(name: str, device: torch.device) -> list[dict]:
    """Per batch size: the traced steady-state peak (a second traced step), its seconds, the measured peak."""
    model, optimizer, batch, loss_of, _target = build(name, device)
    fake = FakeStep(copy.deepcopy(model), lambda m: torch.optim.Adam(m.parameters(), lr=1e-3), device)
    rows, traced = [], {}
    for n in SIZES[name]:
        example = batch(2)  # the trace needs the batch's shapes only: two samples stand for n
        started = time.perf_counter()
        fake.trace(example, n, 2, loss_of)  # a first step creates the optimizer state
        traced[n] = fake.trace(example, n, 2, loss_of)
        seconds = time.perf_counter() - started
        measure_step(model, optimizer, batch(n), loss_of, batch_size=n, device=device)
        measured = measure_step(model, optimizer, batch(n), loss_of, batch_size=n, device=device)
        rows.append({"batch": n, "traced": traced[n].peak, "seconds": seconds, "measured": measured.peak})
    small, middle, large = SIZES[name]
    rows[-1]["extrapolated"] = PeakModel(traced[small], traced[middle]).peak(large)
    return rows


def rss_peak(name: str) -> float:
    """Child process: the rise of the resident set during a step at the largest batch, sampled every 0.5 ms.

    Two warm-up steps at that batch first: the first touch of kernels' code and thread buffers raises the
    resident set once and would otherwise be counted.
    """
    model, optimizer, batch, loss_of, _target = build(name, torch.device("cpu"))
    full = batch(SIZES[name][-1])

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_of(model, full).backward()
        optimizer.step()

    step()
    step()
    optimizer.zero_grad(set_to_none=True)
    before = _resident_set()
    highest, running = [before], [True]

    def sample() -> None:
        while running[0]:
            highest[0] = max(highest[0], _resident_set())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    step()
    running[0] = False
    sampler.join()
    optimizer.zero_grad(set_to_none=True)
    tensors = storage_bytes(list(model.parameters()) + list(model.buffers()) + list(full)
                            + [t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)])
    return tensors + highest[0] - before


def _resident_set() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_in_subprocess(name: str) -> float | None:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    done = subprocess.run([sys.executable, __file__, "--rss-child", name], env=env, capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rss", action="store_true", help="also read the resident set of a step (CPU, largest batch)")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        print(json.dumps(rss_peak(args.rss_child)))
        return
    device = torch.device(args.device)
    print(f"peak of one Adam step (steady state), fake-traced vs measured ({device})")
    print(f"{'model':14s} {'batch':>6s} {'traced':>10s} {'seconds':>8s} {'measured':>10s} {'error':>7s}"
          f"  {'from 2 traces':>13s}" + (f"  {'rss':>10s} {'error':>7s}" if args.rss else ""))
    for name in MODELS:
        for row in trace_and_measure(name, device):
            line = (f"{name:14s} {row['batch']:6d} {row['traced'] / MiB:8.1f}Mi {row['seconds']:8.3f} "
                    f"{row['measured'] / MiB:8.1f}Mi {100 * (row['traced'] / row['measured'] - 1):+6.2f}%")
            if "extrapolated" in row:
                line += f"  {row['extrapolated'] / MiB:11.1f}Mi"
                if args.rss and device.type == "cpu":
                    rss = rss_in_subprocess(name)
                    line += (f"  {rss / MiB:8.1f}Mi {100 * (row['traced'] / rss - 1):+6.1f}%" if rss
                             else "  (rss unavailable)")
            print(line)


if __name__ == "__main__":
    main()
