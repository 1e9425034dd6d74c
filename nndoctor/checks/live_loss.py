"""Live judges of the loss's input (``probes/watchers/loss_inputs.py``): probabilities into a loss that
applies softmax/sigmoid itself (LOS001), seen on the user's own first training steps; and the compiled-model
guard (``probes/watchers/compiled.py``), which has nothing to judge."""
from __future__ import annotations

import math
from typing import Any

from torch import nn

from nndoctor.findings import Finding

MODULE_OF = {"cross_entropy": "CrossEntropyLoss", "binary_cross_entropy_with_logits": "BCEWithLogitsLoss"}
SQUASH = {"cross_entropy": (nn.Softmax,), "binary_cross_entropy_with_logits": (nn.Sigmoid,)}


def _squashing_module(watcher: Any, name: str) -> str:
    """The path of the last softmax (sigmoid) module of the model being trained, if it has one."""
    for root in watcher.run.roots.values():
        if root.trained:
            found = [path for path, m in root.modules.items() if path and isinstance(m, SQUASH[name])]
            if found:
                return f"model.{found[-1]}"
    return ""


def judge_loss_inputs(watcher: Any) -> list[Finding]:
    out = []
    for name, looked in watcher.looked.items():
        hits = watcher.probabilities.get(name, 0)
        if not looked or hits < looked:  # every training call read fed it probabilities: not a coincidence
            continue
        loss, module = MODULE_OF[name], _squashing_module(watcher, name)
        site = watcher.site.get(name, "")
        made_by = f"the {module} layer" if module else ("a softmax" if name == "cross_entropy" else "a sigmoid")
        evidence: dict[str, Any] = {"loss": loss, "calls_read": looked, "calls_probabilities": hits,
                                    "cause": "activation"}
        if watcher.origin.get(name):
            evidence["grad_fn"] = watcher.origin[name]
        if name == "cross_entropy":
            c = watcher.classes.get(name, 2)
            floor = math.log(c - 1 + math.e) - 1  # the loss of a one-hot probability row on the right class
            evidence.update(classes=c, loss_floor=round(floor, 4))
            what = (f"its rows lie in [0, 1] and sum to 1 (probabilities, made by {made_by}) in all {looked} training "
                    f"calls read. CrossEntropyLoss applies log-softmax itself: the loss cannot go below {floor:.2f} "
                    "however well the model learns (instead of 0), and the gradients are squashed.")
        else:
            what = (f"it holds probabilities in (0, 1) (made by {made_by}) in all {looked} training calls read. "
                    "BCEWithLogitsLoss applies a sigmoid itself: sigmoid(p) >= 0.5 for every p in (0, 1), so the "
                    "model can never predict the negative class.")
        fixes = [f"{loss} takes raw logits: return them from the model and apply "
                 f"{'softmax' if name == 'cross_entropy' else 'sigmoid'} only when you need probabilities (at inference)."]
        if module:
            fixes.insert(0, f"Remove `{module}` (the last layer) from the model used for training.")
        out.append(Finding("LOS001", f"The input of {loss} ({site or 'the loss'}): {what}",
                           location=module or site or "loss", evidence=evidence, suggestions=fixes))
    return out


def judge_compiled(watcher: Any) -> list[Finding]:
    return []


def judge_attention_axes(watcher: Any) -> list[Finding]:
    """SHP002 when a seq-first attention took the samples as its sequence and a replay showed samples mixing."""
    m = watcher.mixing
    if not m:
        return []
    n, path = m["batch_size"], f"model.{m['attention']}".rstrip(".")
    return [Finding(
        "SHP002", f"{path} is an attention built with batch_first=False: it reads its input as (sequence, batch, "
        f"embedding), but got {tuple(m['query_shape'])} with the {n} samples on axis 0, so each sample attends to the "
        f"other samples of its batch. Replaying the last training batch on a copy with sample 0 replaced by sample 1 "
        f"moved the outputs of {m['other_samples_moved']} of the other {n - 2} samples (by up to "
        f"{m['max_relative_change']:.2g} of the output's scale).", location=path,
        evidence={**m, "cause": "architecture"},
        suggestions=["Build the attention with `batch_first=True` (nn.MultiheadAttention, nn.TransformerEncoderLayer, "
                     "nn.TransformerDecoderLayer), or feed it (sequence, batch, embedding): `x.transpose(0, 1)`."])]


def judge_padding(watcher: Any) -> list[Finding]:
    """SHP003: a key-padding mask that is the complement of the padding in every call read; LOS005: padded
    targets trained as a class of a vocabulary-sized loss."""
    out = []
    if watcher.masks_read and watcher.inverted == watcher.masks_read:
        e = watcher.inverted_evidence
        out.append(Finding(
            "SHP003", f"The key_padding_mask given to attention ({e['site'] or 'the model'}) is True (= ignore) on the "
            f"real tokens and False on the padding (token id {e['pad_id']}) in all {watcher.masks_read} training calls "
            f"read: it masks {e['masked_share']:.0%} of the keys while the padding is {e['padding_share']:.0%}. Each "
            "query attends only to padding and the real tokens are hidden.",
            location=e["site"] or "model", evidence={**e, "calls_read": watcher.masks_read, "cause": "preprocessing"},
            suggestions=["PyTorch's key_padding_mask is True where a key must be IGNORED: pass `tokens == pad_id` "
                         "(or `~attention_mask` for a Hugging Face style mask that is 1 on real tokens)."]))
    p = watcher.padded_loss
    if p:
        share = p.get("padded_loss_share")
        harm = f" and {share:.0%} of the loss" if share is not None else ""
        what = (f"hold the padding token {p['pad_id']} (the padding_idx of {p['embedding']})"
                if p.get("kind", "token") == "token" else
                f"score the positions whose input is the padding token {p['pad_id']} (the padding_idx of {p['embedding']})")
        out.append(Finding(
            "LOS005", f"The targets of cross_entropy ({p['site'] or 'the loss'}) {what} at "
            f"{p['padded_target_share']:.0%} of the positions{harm}, and ignore_index={p['ignore_index']} does not skip "
            "them: the model is trained on padding, which dilutes the loss of the real tokens.",
            location=p["site"] or p["embedding"],
            evidence={**p, "cause": "loss"},
            suggestions=[f"Pass `ignore_index={p['pad_id']}` to cross_entropy / CrossEntropyLoss, or set the padded "
                         "targets to -100." if p.get("kind", "token") == "token" else
                         "Set the labels at padded positions to the loss's ignore_index (-100 by default)."]))
    return out


def judge_future_leak(watcher: Any) -> list[Finding]:
    """SHP004: a next-token model whose earlier predictions depend on a later token (no causal mask)."""
    m = watcher.leak
    if not m:
        return []
    return [Finding(
        "SHP004", f"The model is trained to predict the next token (its targets are its input tokens shifted by one), "
        f"but changing only token {m['changed_token']} changed its outputs at positions 0..{m['position']} (by up to "
        f"{m['max_relative_change']:.2g} of the output's scale, on a copy with the first training batch): each "
        "position sees the future tokens it must predict, so the training loss falls far below what next-token "
        "prediction allows and generation fails.", location="model",
        evidence={**m, "cause": "leakage"},
        suggestions=["Pass a causal mask to the attention: `mask=nn.Transformer.generate_square_subsequent_mask(T)` "
                     "with `is_causal=True` (nn.TransformerEncoder / nn.MultiheadAttention `attn_mask`), or "
                     "`F.scaled_dot_product_attention(q, k, v, is_causal=True)`."])]


def judge_sequences(watcher: Any) -> list[Finding]:
    """The sequence replay's two verdicts: attention across samples (SHP002), the future seen (SHP004)."""
    return judge_attention_axes(watcher) + judge_future_leak(watcher)
