"""Padded sequences in the first training steps: attention key-padding masks of the wrong polarity, and
padding positions counted in a token-level loss. Two functions are wrapped for the Monitor's lifetime and
read only on their first ``LOOK`` training calls (then they only pass through):

- ``F.multi_head_attention_forward`` (``nn.MultiheadAttention`` and the Transformer layers call it): its
  ``key_padding_mask`` (True, or -inf, = ignore this key) against the root's token ids: the padding is where
  the tokens equal the embedding's ``padding_idx`` (or, without one, the single id filling the unmasked
  positions while the masked ones vary). A mask that is exactly the complement of the padding hides every
  real token and lets each query see only padding.
- ``F.cross_entropy`` over the embedding's vocabulary (a language-model head): targets equal to the
  embedding's ``padding_idx`` that ``ignore_index`` does not cover are trained as a real class.
"""
from __future__ import annotations

import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nndoctor.probes.errors import user_call_site
from nndoctor.probes.watchers.base import Watcher, outside_nndoctor

LOOK = 4


def _embedding(root: Any) -> tuple[str, nn.Embedding] | None:
    for path, m in (root.modules.items() if root is not None else ()):
        if isinstance(m, nn.Embedding):
            return path, m
    return None


class PaddingWatcher(Watcher):
    name = "padding"

    def __init__(self, run) -> None:
        super().__init__(run)
        self.masks_read = 0
        self.inverted = 0  # calls whose mask was the exact complement of the padding
        self.inverted_evidence: dict[str, Any] = {}
        self.losses_read = 0
        self.padded_loss: dict[str, Any] = {}  # the first call whose targets counted padding
        self._patches = self.patches()
        self._embeddings: dict[int, Any] = {}  # id(root) -> (root, its first embedding or None): looked up once

    def start(self) -> None:
        self._cross_entropy = F.cross_entropy  # measures the padded terms without passing our own wrapper
        for name, look in (("multi_head_attention_forward", self._look_mask), ("cross_entropy", self._look_loss)):
            self._patches.method(F, name, before=self._in_training(look))

    def _in_training(self, look):
        def read(*args: Any, **kwargs: Any) -> None:
            if torch.is_grad_enabled():
                look(args, kwargs)
        return read

    def stop(self) -> None:
        self._patches.undo()

    def _current_root(self):
        call = self.run.last_train_call
        return (self.run.roots.get(id(call[0])), call[1]) if call is not None else (None, ())

    def _embedding(self, root: Any) -> tuple[str, nn.Embedding] | None:
        known = self._embeddings.get(id(root))
        if known is None or known[0] is not root:
            known = self._embeddings[id(root)] = (root, _embedding(root))
        return known[1]

    def _look_mask(self, args: tuple, kwargs: dict) -> None:
        if self.masks_read >= LOOK or torch.compiler.is_compiling():
            return
        kpm = kwargs.get("key_padding_mask")
        if kpm is None and len(args) > 15:
            kpm = args[15]
        if not isinstance(kpm, torch.Tensor) or kpm.ndim != 2:
            return
        masked = kpm if kpm.dtype == torch.bool else torch.isneginf(kpm)
        root, inputs = self._current_root()
        tokens = next((t for t in inputs if isinstance(t, torch.Tensor) and not t.is_floating_point()
                       and tuple(t.shape) == tuple(masked.shape)), None)
        if tokens is None:
            return
        self.masks_read += 1
        masked, tokens = masked.detach().cpu(), tokens.detach().cpu()
        found = self._embedding(root)
        pad_id = found[1].padding_idx if found is not None else None
        if pad_id is None:  # the pad: one id filling every unmasked position while the masked ones vary
            shown = tokens[~masked]
            if shown.numel() and bool((shown == shown[0]).all()) and tokens[masked].unique().numel() >= 3:
                pad_id = int(shown[0])
        if pad_id is None:
            return
        pad = tokens == pad_id
        if bool(pad.any()) and bool((~pad).any()) and bool((masked == ~pad).all()):
            self.inverted += 1
            if not self.inverted_evidence:
                self.inverted_evidence = {
                    "pad_id": int(pad_id), "masked_share": round(float(masked.float().mean()), 4),
                    "padding_share": round(float(pad.float().mean()), 4), "mask_shape": list(masked.shape),
                    "site": user_call_site(outside_nndoctor(sys._getframe()))[0]}

    def _look_loss(self, args: tuple, kwargs: dict) -> None:
        if self.losses_read >= LOOK or self.padded_loss or torch.compiler.is_compiling():
            return
        root, inputs = self._current_root()
        found = self._embedding(root)  # the cheap, usually decisive test first: no padded embedding, no reading
        if found is None or found[1].padding_idx is None:
            return
        x = args[0] if args else kwargs.get("input")
        target = args[1] if len(args) > 1 else kwargs.get("target")
        if not isinstance(x, torch.Tensor) or not isinstance(target, torch.Tensor) or target.is_floating_point() \
                or x.ndim < 2 or not x.requires_grad:
            return
        pad_id = found[1].padding_idx
        ignore = kwargs.get("ignore_index", args[4] if len(args) > 4 else -100)
        if x.shape[1] == found[1].num_embeddings:  # a head over the vocabulary: padding is a target token
            if ignore == pad_id:
                return
            at_pad, kind = target == pad_id, "token"
        else:  # per-token labels (tagging): the labels at the input's padded positions must be ignored
            tokens = next((t for t in inputs if isinstance(t, torch.Tensor) and not t.is_floating_point()
                           and t.ndim >= 2 and t.numel() == target.numel()), None)
            if tokens is None:
                return  # a class 0 is a class, not padding
            at_pad, kind = (tokens.reshape(target.shape) == pad_id) & (target != ignore), "position"
        self.losses_read += 1
        share = float(at_pad.float().mean())
        if share <= 0:
            return
        with torch.no_grad():
            terms = self._cross_entropy(x.detach().float(), target, reduction="none")
            flat, pads = terms.reshape(-1), at_pad.reshape(-1)
            total = float(flat.sum()) if flat.numel() == pads.numel() else 0.0
            loss_share = float(flat[pads].sum()) / total if total > 0 else None
        self.padded_loss = {"pad_id": int(pad_id), "padded_target_share": round(share, 4), "kind": kind,
                            "embedding": f"model.{found[0]}", "ignore_index": int(ignore),
                            "site": user_call_site(outside_nndoctor(sys._getframe()))[0]}
        if loss_share is not None:
            self.padded_loss["padded_loss_share"] = round(loss_share, 4)

    def describe(self) -> str:
        return "padding: key-padding-mask polarity, padded targets in the loss"
