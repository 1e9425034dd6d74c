"""Live runs: gradients never zeroed (GRD005) and parameters the optimizer never changes (GRD002), from the
stale-gradients and optimizer watchers (``probes/watchers/stale_gradients.py``, ``optimizer.py``). The
single-batch experiment's gradient checks are in ``checks/gradients.py``."""
from __future__ import annotations

from typing import Any

from nndoctor.findings import Finding
from nndoctor.probes.wrappers import named_parameters


def judge_stale(watcher: Any) -> list[Finding]:
    if watcher.stale_steps < 2:
        return []
    return [Finding(
        "GRD005", f"In {watcher.stale_steps} of {watcher.run.steps} optimizer steps the gradients of the previous "
        "step were still in .grad when backward ran: gradients are never zeroed, they accumulate.",
        location="optimizer", evidence={"stale_steps": watcher.stale_steps, "steps": watcher.run.steps},
        suggestions=["Call optimizer.zero_grad() once per step (before backward)."])]


def judge_updates(watcher: Any) -> list[Finding]:
    return [*_orphans(watcher), *_changed_none(watcher), *_never_stepped(watcher)]


def _orphans(watcher: Any) -> list[Finding]:
    """Trainable parameters of a trained model that no stepping optimizer holds."""
    optimizers = watcher.optimizers()
    if not optimizers:
        return []
    owned = {id(p) for o in optimizers for p in watcher.run.trainable_params(o)}
    found = []
    for r in watcher.run.roots.values():
        root = r.ref()
        if root is None or not r.trained:
            continue
        orphans = [name for name, p in named_parameters(root) if p.requires_grad and id(p) not in owned]
        if orphans:
            total = sum(1 for p in root.parameters() if p.requires_grad)
            stale = _replaced(watcher, optimizers, root)
            why = (f"; the optimizer still holds {stale} tensors the model no longer has: the module was replaced "
                   "after the optimizer was built") if stale else ""
            found.append(Finding(
                "GRD002", f"{len(orphans)} of {total} trainable parameters of the model are in no optimizer, "
                f"so they never change: {', '.join(orphans[:5])}{why}.",
                location="model." + orphans[0].rsplit(".", 1)[0] if "." in orphans[0] else "model",
                evidence={"not_in_optimizer": orphans[:50], "trainable": total, "cause": "optimizer",
                          **({"replaced_after_optimizer": stale} if stale else {})},
                suggestions=["Build the optimizer after the model is complete (new heads, replaced layers), or "
                             "add the new module's parameters: optimizer.add_param_group({'params': "
                             "new_module.parameters()})." if stale else
                             "Build the optimizer from model.parameters() of the model you train."]))
    return found


def _replaced(watcher: Any, optimizers: list, root: Any) -> int:
    """How many tensors the optimizers hold that belong to no watched model, when they also hold some of this
    model's: parameters of a module replaced after the optimizer was built (an optimizer built for another
    model holds none of this one's)."""
    mine = {id(p) for p in root.parameters()}
    live = {id(p) for r in watcher.run.roots.values() if r.ref() is not None for p in r.ref().parameters()}
    held = [p for o in optimizers for p in watcher.run.trainable_params(o)]
    if not any(id(p) in mine for p in held):
        return 0
    return sum(id(p) not in live for p in held)


def _changed_none(watcher: Any) -> list[Finding]:
    found = []
    for u in watcher.updates.values():
        if u.changed == 0 and u.with_grad:
            found.append(Finding(
                "GRD002", f"The optimizer stepped with a learning rate of {u.lr:.3g} but changed none of the "
                f"{u.with_grad} parameters that had gradients over {u.compared} step(s) (every update masked, "
                "or parameters restored after the step).", location="optimizer",
                evidence={"params_with_grad": u.with_grad, "steps_compared": u.compared, "lr": u.lr},
                suggestions=["Check the learning rate and the optimizer's parameter groups."]))
        elif u.first is None and u.zero_lr_steps >= 2:  # a warm-up from 0 is above 0 by its second step
            found.append(Finding(
                "GRD002", f"The optimizer stepped {u.zero_lr_steps} times, every time with a learning rate of 0: "
                "it changed none of its parameters.", location="optimizer",
                evidence={"steps_at_lr_0": u.zero_lr_steps, "lr": 0.0},
                suggestions=["Check the learning rate and the optimizer's parameter groups."]))
    return found


def _never_stepped(watcher: Any) -> list[Finding]:
    """An optimizer exists, backward ran batch after batch, and no optimizer ever stepped: step() is missing.
    (A script that computes gradients without any optimizer, for saliency, is not training: silent.)"""
    if watcher.run.steps or watcher.backwards < 2:
        return []
    found = []
    for optimizer, site in watcher.never_stepped()[:1]:
        found.append(Finding(
            "GRD002", f"backward() ran {watcher.backwards} times but the {type(optimizer).__name__} built at "
            f"{site} never stepped: its parameters get gradients and never change.", location=site,
            evidence={"backward_calls": watcher.backwards, "optimizer_steps": 0, "created_at": site,
                      "cause": "optimizer"},
            suggestions=["Call optimizer.step() after loss.backward() (then optimizer.zero_grad())."]))
    return found
