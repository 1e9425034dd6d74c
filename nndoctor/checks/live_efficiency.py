"""Live runs: wasted compute (EFF001-EFF005), always info, each quoting what was measured on this run.

The decisions are plain functions of the watchers' numbers (``loader_bound``, ``decayed_one_d``,
``misaligned``, ``channels_first``, ``float32_training``) so they are tested with explicit inputs, the GPU
ones included, on a machine without a GPU.
"""
from __future__ import annotations

import statistics
from typing import Any

from nndoctor.findings import Finding

MOST = 0.5  # "most of the step"
MIN_WAIT_MS = 1.0  # a worker process or pinning thread hands a batch over in about this: shorter is not won back
MIN_STEPS = 5  # steps measured before a median means anything
LOW = ("float16", "bfloat16")
SHARE = 0.05  # a layer that does less of the multiply-adds than this is not worth reshaping
CONV_NET = 0.5  # 2-D convolutions doing at least this share of the multiply-adds: a conv net
IMAGE_CHANNELS = 4  # an image net's first conv (RGB(A), grey): cuDNN pads these few channels itself
MIN_MACS = 1e8  # under this a matmul is well under a microsecond of tensor-core time, less than its kernel
# launch: its shape or layout cannot matter (a tiny model on a GPU)


# ----- EFF001 the data loader -----------------------------------------------------------------------------
def loader_bound(samples: list[tuple[float, float]], gpu_idle: list[tuple[float, float]] = ()) -> dict | None:
    """samples: per step (seconds in the loader, seconds from this training forward to the next); gpu_idle:
    per timed step on a GPU (ms the device idled, ms of the step). The measurement when the step waits
    on its data most of the time, else None."""
    steps = [(w, t) for w, t in samples if t > 0]
    if len(steps) < MIN_STEPS:
        return None
    share = statistics.median(w / t for w, t in steps)
    wait_ms = statistics.median(w for w, _ in steps) * 1e3
    step_ms = statistics.median(t for _, t in steps) * 1e3
    if share <= MOST or wait_ms < MIN_WAIT_MS:
        return None
    out = {"steps": len(steps), "wait_ms": round(wait_ms, 3), "step_ms": round(step_ms, 3), "share": round(share, 3)}
    timed = [(i, t) for i, t in gpu_idle if t > 0]
    if timed:  # on a GPU the host's wait may overlap queued device work: idle only if the device idled too
        idle = statistics.median(i / t for i, t in timed)
        if idle <= MOST:
            return None
        out["gpu_idle_share"] = round(idle, 3)
    return out


def judge_data_wait(w: Any) -> list[Finding]:
    m = loader_bound(w.samples, w.gpu_idle)
    if m is None:
        return []
    loader = max(w.loaders.values(), key=lambda x: x.seconds, default=None)
    where = loader.site if loader is not None and loader.site else "data loader"
    about = ""
    if loader is not None:
        about = (f" The DataLoader over `{loader.dataset}` runs with num_workers={loader.num_workers}, "
                 f"pin_memory={loader.pin_memory}.")
        m = {**m, "dataset": loader.dataset, "num_workers": loader.num_workers, "pin_memory": loader.pin_memory}
    gpu = f"; the GPU sat idle {m['gpu_idle_share']:.0%} of the step" if "gpu_idle_share" in m else ""
    tips = []
    if loader is not None and loader.num_workers == 0:
        tips.append("Load in worker processes: DataLoader(..., num_workers=4, persistent_workers=True).")
    elif loader is not None:
        tips.append(f"More workers than {loader.num_workers}, or a larger prefetch_factor, if cores are free.")
    if loader is not None and not loader.pin_memory and w.device == "cuda":
        tips.append("pin_memory=True, and .to(device, non_blocking=True) for the batch.")
    tips.append("Do fixed pre-processing (decoding, resizing, tokenising) once, ahead of training.")
    return [Finding(
        "EFF001", f"The training step waited on the data loader {m['wait_ms']:.1f} ms of its "
        f"{m['step_ms']:.1f} ms ({m['share']:.0%}, the median over {m['steps']} steps){gpu}: the model computed "
        f"for less than half of the run's time.{about}", location=where, evidence=m, suggestions=tips)]


# ----- EFF002 weight decay on biases, norms, embeddings ---------------------------------------------------
def decayed_one_d(groups: list[Any]) -> list[Any]:
    """Groups with weight decay that hold one-dimensional parameters (biases, norm weights). A recipe that
    split decayed from non-decayed parameters keeps those out of its decayed groups: silent."""
    return [g for g in groups if g.weight_decay > 0 and g.one_d > 0]


def judge_weight_decay(w: Any) -> list[Finding]:
    out = []
    for opt in w.optimizers:
        for g in decayed_one_d(opt.groups):
            modules = sorted({n.rsplit(".", 1)[0] for n in g.one_d_names})
            named = ", ".join(modules[:6]) + (", ..." if len(modules) > 6 else "")
            emb = f" and {len(g.embeddings)} embedding table(s) ({', '.join(g.embeddings[:3])})" if g.embeddings else ""
            group = f"parameter group {g.index}" if len(opt.groups) > 1 else "its only parameter group"
            out.append(Finding(
                "EFF002", f"{opt.kind} applies weight_decay={g.weight_decay:g} (lr {g.lr:g}) in {group} to "
                f"{g.one_d} one-dimensional parameters ({g.one_d_elements} values: biases and normalisation "
                f"weights{', in ' + named if named else ''}){emb}, along with the weight matrices.",
                location=opt.site or "optimizer",
                evidence={"optimizer": opt.kind, "group": g.index, "weight_decay": g.weight_decay, "lr": g.lr,
                          "one_d_tensors": g.one_d, "one_d_values": g.one_d_elements, "modules": modules,
                          "embeddings": g.embeddings, "tensors_in_group": g.tensors},
                suggestions=[("Two groups: {'params': [p for p in params if p.dim() >= 2], 'weight_decay': wd} and "
                              "{'params': [p for p in params if p.dim() < 2], 'weight_decay': 0.0}.")]))
    return out


# ----- EFF003-EFF005 the GPU's matmuls ---------------------------------------------------------------------
def _shares(layers: list[Any]) -> dict[str, float]:
    total = sum(layer.macs for layer in layers) or 1.0
    return {layer.path: layer.macs / total for layer in layers}


def misaligned(layers: list[Any]) -> list[tuple[Any, float]]:
    """Layers computed in 16 bits that do at least SHARE of the multiply-adds, and at least MIN_MACS, with an
    input or output size that is not a multiple of 8 (a conv's few image channels aside)."""
    share = _shares(layers)
    out = []
    for layer in layers:
        dims = [layer.out_dim] + ([] if layer.kind != "linear" and layer.in_dim <= IMAGE_CHANNELS else [layer.in_dim])
        if layer.dtype in LOW and share[layer.path] >= SHARE and layer.macs >= MIN_MACS and any(d % 8 for d in dims):
            out.append((layer, share[layer.path]))
    return out


def channels_first(layers: list[Any]) -> tuple[list[Any], float]:
    """The 2-D convolutions computed in 16 bits with neither input nor weight channels_last, when they do
    at least CONV_NET of the multiply-adds (a conv net); else ([], share)."""
    share = _shares(layers)
    slow = [layer for layer in layers if layer.kind == "conv2d" and layer.dtype in LOW and layer.channels_last is False]
    part = sum(share[layer.path] for layer in slow)
    return (slow, part) if part >= CONV_NET and sum(x.macs for x in slow) >= MIN_MACS else ([], part)


def float32_training(forward: Any, layers: list[Any]) -> bool:
    """No autocast, float32 parameters, every matmul layer in float32, on a GPU with bfloat16."""
    params = forward.param_dtypes
    return (forward.device == "cuda" and forward.bf16_supported and not forward.autocast and bool(layers)
            and all(layer.dtype == "float32" for layer in layers)
            and params.get("float32", 0) * 2 > sum(params.values()))


def judge_gpu(w: Any) -> list[Finding]:
    f, layers = w.forward, w.layers
    if f is None or not layers:
        return []
    out = []
    bad = misaligned(layers)
    if bad:
        layer = bad[0][0]
        listed = "; ".join(f"{x.path} ({x.kind} {x.in_dim}->{x.out_dim}, {s:.0%} of the multiply-adds)" for x, s in bad[:4])
        out.append(Finding(
            "EFF003", f"Under {layer.dtype} on {f.device}, {len(bad)} layer(s) doing a large share of the model's "
            f"multiply-adds have a size that is not a multiple of 8, which tensor cores need: {listed}.",
            location=layer.path,
            evidence={"layers": [{"module": x.path, "kind": x.kind, "in": x.in_dim, "out": x.out_dim,
                                  "share": round(s, 3), "dtype": x.dtype} for x, s in bad]},
            suggestions=[("Round those sizes up to a multiple of 8 (64 is better), e.g. pad a vocabulary of 50257 "
                          "to 50304.")]))
    slow, part = channels_first(layers)
    if slow:
        out.append(Finding(
            "EFF004", f"{len(slow)} Conv2d layer(s) doing {part:.0%} of the model's multiply-adds ran under "
            f"{slow[0].dtype} on {f.device} with inputs and weights in channels-first (NCHW) layout; "
            f"tensor-core convolutions are fastest in channels_last. First: {slow[0].path}.",
            location=slow[0].path,
            evidence={"convs": [x.path for x in slow[:16]], "conv_share": round(part, 3), "dtype": slow[0].dtype},
            suggestions=[("model = model.to(memory_format=torch.channels_last), and "
                          "x = x.to(device, memory_format=torch.channels_last) for each batch.")]))
    if float32_training(f, layers):
        n = sum(f.param_dtypes.values())
        out.append(Finding(
            "EFF005", f"Training ran in float32 on {f.device} (no autocast; {n} float32 parameters; "
            f"{len(layers)} Linear/conv layers computed in float32) although this GPU supports bfloat16.",
            location=f.site or "model",
            evidence={"device": f.device, "parameters": n, "layers": len(layers), "bf16_supported": True},
            suggestions=[("with torch.autocast('cuda', dtype=torch.bfloat16): around the forward and loss "
                          "(Lightning: precision='bf16-mixed'; Hugging Face: bf16=True).")]))
    return out
