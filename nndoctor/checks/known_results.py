"""Step 4, compared with what others got: the user's known results ranked by how trustworthy their source is
(CMP003), on the same samples and metric as the baselines (``compare.py``'s comparison), and layer by layer
with a reference implementation (CMP004).
"""
from __future__ import annotations

from nndoctor import data as D
from nndoctor.checks import SkipCheck, check
from nndoctor.checks.compare import Comparison, in_metric, comparison
from nndoctor.checks.compare_causes import NOISE
from nndoctor.context import Context
from nndoctor.probes import scoring
from nndoctor.reference import diff_models, divergence_findings
from nndoctor.spec import SOURCES, KnownResult

FAR = 0.25  # a shortfall of this share of (known result - majority) is "far below"
NEAR = 0.05

HIERARCHY = {
    "official-similar": "an official implementation evaluated on data similar to yours",
    "official-benchmark": "an official implementation on a benchmark dataset",
    "unofficial": "an unofficial implementation",
    "paper": "a paper's reported result (no code)",
    "benchmark": "the model's results on a benchmark dataset",
    "similar-model": "a similar model on similar data",
}


@check("known-results", step="compare", codes=("CMP003",))
def known_results(ctx: Context) -> None:
    """Each known result, most trusted first: the gap to it, weighed by how trustworthy its source is."""
    known = sorted(ctx.setup.known_results, key=lambda k: k.trust_rank)
    if not known:
        order = "; ".join(f"{i + 1}. {HIERARCHY[s]} (source={s!r})" for i, s in enumerate(SOURCES))
        ctx.emit("CMP003", "No known results were given, so nndoctor can only compare with simple baselines. Look "
                           f"for results in this order, most trusted first: {order}.", severity="info",
                 location="known_results", evidence={"hierarchy": list(SOURCES)},
                 suggestions=["Pass what you find as Setup(known_results=[KnownResult(metric='accuracy', value=0.97, "
                              "source='official-similar', note='where it comes from')])."])
        return
    cmp = comparison(ctx)
    majority = cmp.baseline("majority")
    model_scores = scoring.all_scores(cmp.kind, cmp.pred, cmp.y_eval)
    floor_scores = scoring.all_scores(cmp.kind, majority.predictions, cmp.y_eval) if majority else {}
    for i, kr in enumerate(known):
        _judge_known(ctx, cmp, kr, model_scores, floor_scores, rank=i)


def _judge_known(ctx: Context, cmp: Comparison, kr: KnownResult, model_scores: dict[str, float],
                 floor_scores: dict[str, float], rank: int) -> None:
    canon = scoring.canonical_metric(kr.metric)
    location = f"known_results[{ctx.setup.known_results.index(kr)}]"
    known_value, notes = kr.value, []
    if canon in model_scores:
        model_value, floor, higher = model_scores[canon], floor_scores.get(canon), scoring.higher_is_better(canon)
        per_sample = {"error_rate": "accuracy", "mse": "neg_mse"}.get(canon, canon)
        se = (scoring.standard_error(per_sample, cmp.pred, cmp.y_eval)
              if per_sample in ("accuracy", "balanced_accuracy", "r2", "neg_mse") else 0.0)
        if canon in ("accuracy", "balanced_accuracy", "error_rate") and 1 < known_value <= 100:
            known_value = in_metric(kr, canon)
            notes.append(f"read {kr.value:g} as a percentage")
    elif cmp.user_metric is not None:
        model_value, floor, higher, se = cmp.user_metric, None, kr.higher_is_better, 0.0
        notes.append("compared in your Setup.metric")
    else:
        ctx.emit("CMP003", f"Known result {kr.metric}={kr.value:g} ({kr.source}) cannot be compared: nndoctor does "
                           f"not compute {kr.metric!r}.", severity="info", location=location,
                 suggestions=["Give Setup(metric=...) that computes it from (outputs, targets), or state the known "
                              "result as accuracy, balanced_accuracy, r2, mse, rmse or mae."])
        return
    gap = (known_value - model_value) if higher else (model_value - known_value)  # > 0: the model is worse
    noise = NOISE * se
    span = abs(known_value - floor) if floor is not None and (known_value - floor) * (1 if higher else -1) > 0 \
        else max(abs(known_value), 1e-12)
    shortfall = (gap - noise) / span  # the share of the way from majority to the known result still missing
    severity = _severity(kr, shortfall, cmp)
    evidence = {"metric": kr.metric, "known": known_value, "model": model_value, "source": kr.source,
                "trust_rank": kr.trust_rank, "gap": gap, "noise": noise, "shortfall": shortfall, "floor": floor,
                "split": cmp.split.description, "trained": cmp.how_trained, "note": kr.note, "remarks": notes}
    ctx.extras.setdefault("compare", {}).setdefault("known", []).append(evidence)
    source = HIERARCHY[kr.source]
    if shortfall <= 0:
        ctx.emit("CMP003", f"The model's {kr.metric} {model_value:.4g} is within noise ({noise:.3g}) of or better than "
                           f"the known result {known_value:.4g} from {source}.", severity="info", location=location,
                 evidence=evidence)
        return
    far = "far " if shortfall >= FAR else ""
    message = (f"The model's {kr.metric} {model_value:.4g} (on {cmp.split.description}) is {far}below the known result "
               f"{known_value:.4g} from {source} (trust rank {rank + 1} of {len(ctx.setup.known_results)} given; "
               f"gap {gap:.3g}, {shortfall:.0%} of the way from {'the majority baseline' if floor is not None else 'zero'} "
               f"to it still missing after allowing {noise:.3g} for noise).")
    if kr.source in ("official-benchmark", "benchmark"):
        message += " Benchmark data differ from yours, so some gap is expected."
    elif kr.source == "similar-model":
        message += " A similar model on similar data is a loose reference."
    if cmp.training is not None:
        message += (f" nndoctor trained a copy only briefly ({cmp.how_trained}); pass your trained model with "
                    "Setup(trained=True) for a fair comparison.")
    ctx.emit("CMP003", message, severity=severity, location=location, evidence=evidence,
             suggestions=["Reproduce the known result's setup step by step (data pre-processing, model, loss, "
                          "optimizer, schedule, training length) and find the first difference.",
                          "If you re-implemented an official model, compare it layer by layer with "
                          "Setup(reference_model=...) or nndoctor.compare_models."])


def _severity(kr: KnownResult, shortfall: float, cmp: Comparison) -> str:
    """Far below an official result on similar data: error; otherwise clearly below: warning."""
    if kr.source == "official-similar":
        severity = "error" if shortfall >= FAR else ("warning" if shortfall > NEAR else "info")
    else:
        severity = "warning" if shortfall >= FAR else "info"
    if cmp.training is not None:  # a briefly trained copy is no fair match for a result of full training
        severity = "warning" if shortfall >= FAR and not cmp.still_improving else "info"
    return severity


# ----- CMP004 reference divergence ------------------------------------------------------------------
REFERENCE_SAMPLES = 16


@check("reference-model", step="compare", codes=("CMP004",), needs_run=False)
def reference_model(ctx: Context) -> None:
    """Layer by layer against Setup(reference_model=...), on the first training samples."""
    reference = ctx.setup.reference_model
    if reference is None:
        raise SkipCheck("no reference_model given")
    batch = ctx.first_batch()
    pair = ctx.pair(batch)
    inputs = pair[0] if pair is not None else batch
    inputs = D.index(inputs, slice(0, REFERENCE_SAMPLES))
    try:
        diff = diff_models(ctx.fresh_model(), reference, inputs)
    except Exception as exc:  # either model crashed on the inputs: step 1 reports the model's own crashes
        raise SkipCheck(f"running the model and the reference failed: {type(exc).__name__}: {str(exc)[:200]}")
    for finding in divergence_findings(diff):
        ctx.emit(**finding)
