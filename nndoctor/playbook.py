"""Run the playbook's checks in order, within a time budget, recording each check's status."""
from __future__ import annotations

import importlib
import os
import time
import traceback
import zlib
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from nndoctor import catalogue
from nndoctor.budget import Budget, BudgetExceeded, hard_deadline
from nndoctor.catalogue import Severity
from nndoctor.checks import SkipCheck, all_checks
from nndoctor.context import Context
from nndoctor.findings import CheckRecord
from nndoctor.interrupts import remembered_ctrl_c, requested
from nndoctor.report.console import progress_display
from nndoctor.report.model import Report
from nndoctor.sandbox import Snapshot, fingerprint, fingerprint_diff, preserved_rng, seed_all
from nndoctor.spec import Setup, SetupError

DEFAULT_BUDGET = 15.0  # seconds for the whole playbook; experiments scale themselves to what is left. Small
# models finish in a few seconds; a heavy one gets shorter experiments (they say so) within ~20 s, import included
QUICK_BUDGET = 5.0  # --quick: the run-after-every-change loop; the one-batch overfit gets a share of this
THOROUGH_BUDGET = 900.0  # --thorough: every experiment, run to its own caps rather than a share of 15 s
MODES = ("quick", "default", "thorough")
MODE_BUDGETS = {"quick": QUICK_BUDGET, "default": DEFAULT_BUDGET, "thorough": THOROUGH_BUDGET}
QUICK_STEPS = ("run", "bugs", "overfit")  # no baselines, no comparisons: those need trained copies
INTERRUPTED = "interrupted (Ctrl-C)"
HEAVY_STEP = 0.2  # s: step 1 (one training step on one thread, data read included) longer than this gets
# torch's threads back, as many as there are idle cores: such steps are long enough for intra-op parallelism to pay


def check(
    setup: Setup,
    *,
    seed: int = 0,
    budget: float | None | str = "auto",
    select: str | list[str] | None = None,
    ignore: str | list[str] | None = None,
    memory: int | str | None = None,
    progress: Callable[[str], None] | bool | None = None,
    mode: str = "default",
) -> Report:
    """Run the whole playbook on copies of ``setup`` and return the Report.

    ``select``/``ignore`` take codes, family prefixes or names. The user's objects and the global
    RNG states are left exactly as they were. ``progress``: None (default) shows it in a notebook or
    on a terminal, True always, False never; a callable receives each message instead.
    ``mode``: "quick" (step 1, the five bugs and the one-batch overfit on a short budget; no baselines,
    comparisons or memory search), "default", or "thorough" (every experiment, a long budget).
    ``budget``: seconds for the whole playbook, None for no limit, "auto" for the mode's (quick 5,
    default 15, thorough 900).
    """
    if not isinstance(setup, Setup):
        raise SetupError(f"nndoctor.check expects a Setup, got {type(setup).__name__}")
    try:
        selected = catalogue.resolve(select)
        ignored = catalogue.resolve(ignore)
    except KeyError as exc:
        raise SetupError(exc.args[0]) from None
    from nndoctor.spec import parse_size

    if mode not in MODES:
        raise SetupError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if budget == "auto":
        budget = MODE_BUDGETS[mode]

    memory_budget = parse_size(memory) if memory is not None else None
    user_optimizer = setup.optimizer if isinstance(setup.optimizer, torch.optim.Optimizer) else None
    before = fingerprint(setup.model, user_optimizer)
    snapshot = Snapshot(setup.model, user_optimizer)
    with preserved_rng():  # some of those modules draw from Python's RNG when imported
        import_seconds = _import_torch_lazily_loaded_parts()
    started = time.monotonic()
    records: list[CheckRecord] = []
    interrupted = False
    grad_mode = torch.is_grad_enabled()
    with preserved_rng(), progress_display(progress) as progress, _one_thread() as threads, remembered_ctrl_c():
        ctx = Context(setup, seed=seed, budget=Budget(budget), progress=progress, memory_budget=memory_budget)
        ctx.mode = mode
        try:
            _run_checks(ctx, records, selected, ignored, budget, seed, grad_mode, mode, threads)
        except KeyboardInterrupt:  # Ctrl-C between two checks: stop there too, keep what was found
            interrupted = True
        interrupted = interrupted or requested() or any(r.detail == INTERRUPTED for r in records)
    changed = fingerprint_diff(before, fingerprint(setup.model, user_optimizer))
    restored = bool(changed)
    if changed:  # the user's own code (a step closing over the original model) changed it: put it back
        snapshot.restore()
        changed = fingerprint_diff(before, fingerprint(setup.model, user_optimizer))
    report = Report(
        findings=list(ctx.findings),
        checks=records,
        meta={
            "seconds": round(time.monotonic() - started, 3),
            "import_seconds": import_seconds,  # torch's lazy imports, once per process: not the checks' time
            "seed": seed,
            "budget_seconds": budget,
            "mode": mode,
            "interrupted": interrupted,
            # what was decided, not how long it took: some check was skipped or cut short by the budget
            "budget_reached": any("time budget" in r.detail for r in records),
            "user_state_changed": changed,
            "user_state_restored": restored,
            "task": _task_summary(ctx, may_run_user_code=not interrupted and not ctx.budget.expired()),
            "extras": ctx.extras,
        },
    )
    return report.filtered(selected or None, ignored or None)


def _run_checks(ctx: Context, records: list[CheckRecord], selected: set[str], ignored: set[str],
                budget: float | None, seed: int, grad_mode: bool, mode: str = "default", threads: int = 1) -> None:
    """Each check in playbook order, its status appended to ``records``; returns early on Ctrl-C.
    ``threads``: torch's thread count to give back once step 1 shows a heavy training step."""
    for spec in all_checks():
        if requested():  # Ctrl-C whose KeyboardInterrupt was swallowed (a finaliser, the user's broad except)
            records.append(CheckRecord(spec.name, "skipped", 0.0, INTERRUPTED, spec.step))
            return
        wanted = set(spec.codes)
        if selected:
            wanted &= selected
        wanted -= ignored
        if not wanted and not spec.prerequisite:
            records.append(CheckRecord(spec.name, "skipped", 0.0, "not selected", spec.step))
            continue
        if mode == "quick" and _left_out_of_quick(spec, ctx):
            records.append(CheckRecord(spec.name, "skipped", 0.0, "quick mode", spec.step))
            continue
        if spec.needs_run and not ctx.run_ok or ctx.not_run_reason and spec.uses_model:
            reason = ctx.not_run_reason or "the model does not run one training step"
            records.append(CheckRecord(spec.name, "skipped", 0.0, reason, spec.step))
            continue
        if ctx.budget.expired():
            records.append(CheckRecord(spec.name, "skipped", 0.0, f"time budget of {budget:g} s used up", spec.step))
            continue
        ctx.progress(f"{catalogue.STEPS[spec.step]}: {spec.name}")
        n_before = len(ctx.findings)
        t0 = time.monotonic()
        try:
            seed_all(seed + zlib.crc32(spec.name.encode()))
            with hard_deadline(ctx.budget):
                spec.func(ctx)
            new = ctx.findings[n_before:]
            bad = [f for f in new if f.severity != Severity.INFO]
            status, detail = ("failed", ", ".join(sorted({f.code for f in bad}))) if bad else ("passed", "")
        except SkipCheck as exc:
            status, detail = "skipped", str(exc)
        except BudgetExceeded:
            status, detail = "skipped", f"stopped: time budget of {budget:g} s used up (your code was still running)"
        except KeyboardInterrupt:
            records.append(CheckRecord(spec.name, "skipped", time.monotonic() - t0, INTERRUPTED, spec.step))
            return
        except Exception as exc:  # nndoctor's own failure: recorded, never raised at the user
            status = "crashed"
            detail = f"{type(exc).__name__}: {exc}".strip()[:300] + " | " + _where(exc)
        finally:
            torch.set_grad_enabled(grad_mode)
        records.append(CheckRecord(spec.name, status, time.monotonic() - t0, detail, spec.step))
        if spec.name == "one-training-step" and records[-1].seconds > HEAVY_STEP:
            torch.set_num_threads(max(1, min(threads, _idle_cores())))


def _import_torch_lazily_loaded_parts() -> float:
    """torch imports torch._dynamo on the first call of any optimizer method (2-7 s on 2 busy cores, once
    per process). The user's own training pays it too. It is an import, reported apart from the checks'
    seconds and not charged to the budget, or a 5 s --quick budget could be spent before the first check.
    The check modules and the scikit-learn parts the baselines fit with are imports of the same kind
    (0.3-0.5 s, once per process)."""
    t0 = time.monotonic()
    import torch._dynamo  # noqa: F401

    all_checks()
    for module in ("sklearn.dummy", "sklearn.linear_model", "sklearn.multioutput", "sklearn.neighbors",
                   "sklearn.pipeline", "sklearn.preprocessing"):
        try:
            importlib.import_module(module)
        except ImportError:  # the checks that need it say so themselves
            break
    return round(time.monotonic() - t0, 3)


@contextmanager
def _one_thread() -> Iterator[int]:
    """torch's intra-op threads off for the playbook (the user's count restored after; yields it).

    The copies nndoctor trains are small and their ops short: a second thread barely shortens them on an
    idle machine (0.9-1.1x, by model), while on a busy one every op waits for a descheduled thread:
    a default check measured 10.7 s with 2 threads and 0.31 s with one (MLP on digits), 20.1 s and 3.9 s
    (small transformer), on 2 shared cores. A model whose training step is heavy gets threads back after
    step 1 (``HEAVY_STEP``), up to the cores that are idle."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield threads
    finally:
        torch.set_num_threads(threads)


def _idle_cores() -> int:
    """Cores no other process is using: the machine's cores less the 1-minute load average (which counts
    this process too). More threads than these wait for each other on every op."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows: no load average; trust the user's thread count
        return cores
    return int(cores - load)


def _left_out_of_quick(spec, ctx: Context) -> bool:
    if spec.step not in QUICK_STEPS and spec.step != "distributed":
        return True
    if spec.name == "memory-fit":
        return ctx.memory_budget is None  # the memory search runs in quick mode only for --memory
    return False


def _task_summary(ctx: Context, may_run_user_code: bool) -> dict:
    """The task as the checks saw it. After Ctrl-C or the budget, the user's (maybe slow) loader is not
    read again just for this line."""
    if not may_run_user_code and "task" not in ctx._measurements:
        return {"kind": "unknown", "num_classes": None}
    try:
        info = ctx.task
        return {"kind": info.kind, "num_classes": info.num_classes}
    except Exception:
        return {"kind": "unknown", "num_classes": None}


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if "nndoctor" in f.filename]
    frame = (mine or frames or [None])[-1]
    return f"{frame.filename}:{frame.lineno}" if frame else "?"
