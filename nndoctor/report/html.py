"""A self-contained HTML page for a Report: a verdict at the top, then findings by playbook step.

The page needs nothing from the network: styles are inline, plots are inline SVG, there is no
script, and a Content-Security-Policy forbids loading anything (defence in depth). Every string that
comes from the user's setup or from a finding (module names, paths, messages, evidence) goes through
``html.escape``; plot text is drawn as paths, never as markup.

Plots read these keys, all optional (absent or malformed data means no plot, never an error):

``report.meta["extras"]`` (what checks put in ``ctx.extras``):
  - ``"overfit"``: ``{"curves": {label: curve}, "ylabel": "loss"}`` -- single-batch training; the
    first curve is the main run, later ones are overlaid. Labels say what a run is: one containing
    "fix" (and not "confirm") is drawn solid as a verified fix, others dashed as confirmations; runs
    whose labels name the same code ("LOS001") share a colour.
  - ``"gradients"``: ``{"layers": [{"name": "model.0", "grad_norm": 0.1, "update_ratio": 1e-3}, ...]}``
    -- per layer, in model order.
  - ``"activations"``: ``{"layers": [{"name": "model.1", "dead_fraction": 0.9,
    "saturated_fraction": 0.0}, ...]}``.
  - ``"compare"``: ``{"metric": "accuracy", "split": str, "rows": [{"name": str, "kind":
    "model|baseline|chance|known|ablation", "value": float}, ...]}`` (as checks/compare.py and known_results.py write it).
  - ``"loss_curve"``: the loss of a ``run`` per optimizer step: a curve. A plain list shorter than
    ``report.meta["steps"]`` (the run's optimizer steps) is a downsampled one: spread evenly over them.
  - ``"lr_curve"``: the learning rate of a ``run`` per optimizer step (max over param groups), downsampled
    as ``loss_curve``; plotted under it.

A *curve* is ``[y, ...]``, ``[[step, y], ...]`` or ``{"steps": [...], "loss": [...]}``; NaN/Inf
(or the strings "nan"/"inf") mark divergence.

Finding evidence:
  - GRD findings, when ``extras["gradients"]`` is absent: ``"layers"`` as there.
  - NUM004/NUM005 findings, when ``extras["activations"]`` is absent: ``"layers"`` as there (rows of
    both codes are merged by name).
  - any finding of a ``run``: an integer ``"step"`` marks the loss curve where it was raised.
"""
from __future__ import annotations

import html
import json
import math
import re
import warnings
from typing import TYPE_CHECKING, Any, Callable

from nndoctor import catalogue
from nndoctor._version import __version__
from nndoctor.catalogue import Severity
from nndoctor.findings import CheckRecord, Finding

if TYPE_CHECKING:  # a view takes a Report; model.py imports the views, never the other way
    from nndoctor.report.model import Report
from nndoctor.report import plots
from nndoctor.report.terminal import step_counts

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
_ICON = {"error": "&#10007;", "warning": "!", "info": "i", "ok": "&#10003;"}  # drawn in a badge
_STATUS_ICON = {"passed": "&#10003;", "failed": "&#10007;", "skipped": "&ndash;", "crashed": "?"}


def render(report: Report, title: str | None = None) -> str:
    title = title or str(report.meta.get("title") or "nndoctor report")
    findings = report.sorted_findings()
    anchors = {id(f): f"finding-{i + 1}" for i, f in enumerate(findings)}
    body = [
        _header(report, title),
        _verdict(report, anchors),
        _overview(report),
        _run_curve(report),
    ]
    for step, heading in catalogue.STEPS.items():
        body.append(_step_section(report, step, heading, [f for f in findings if f.step == step], anchors))
    body += [_checks_table(report.checks), _footer(report)]
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body><main>\n"
        + "\n".join(part for part in body if part)
        + "\n</main></body></html>\n"
    )


def render_frame(report: Report, title: str | None = None, height: str = "44rem") -> str:
    """The page inside an iframe, for a notebook output: the page's styles (``body``, ``main``,
    ``:root``) stay out of the notebook's, and ``sandbox`` keeps any script from running there."""
    return (f'<iframe srcdoc="{esc(render(report, title))}" sandbox="" title="nndoctor report" '
            f'style="width:100%;height:{height};border:1px solid #e4e7ec;border-radius:8px"></iframe>')


# ----- text ----------------------------------------------------------------------------------------
def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def prose(text: str) -> str:
    """Escaped text in which `backticks` become <code> (after escaping, so nothing can break out)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text))


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


# ----- top of the page -------------------------------------------------------------------------------
def _header(report: Report, title: str) -> str:
    facts = []
    task = report.meta.get("task")
    if isinstance(task, dict) and task.get("kind") not in (None, "unknown"):
        classes = task.get("num_classes")
        facts.append(f"task: {task['kind']}" + (f", {classes} classes" if classes else ""))
    seconds = report.meta.get("seconds")
    if isinstance(seconds, (int, float)):
        checks = f"{_plural(len(report.checks), 'check')} in " if report.checks else ""
        facts.append(f"{checks}{seconds:.1f} s")
    if isinstance(report.meta.get("steps"), int):
        facts.append(f"{report.meta['steps']} optimizer steps watched")
    if report.meta.get("seed") is not None:
        facts.append(f"seed {report.meta['seed']}")
    facts.append(f"nndoctor {__version__}")
    return (f"<header class=top><h1>{esc(title)}</h1>"
            f"<p class=facts>{' &middot; '.join(esc(f) for f in facts)}</p></header>")


def _verdict(report: Report, anchors: dict[int, str]) -> str:
    errors, warnings = report.errors, report.warnings
    if errors:
        kind = "error"
        headline = (f"{_plural(len(errors), 'error')}, {_plural(len(warnings), 'warning')}: "
                    "training is broken or silently wrong. Fix the errors first.")
    elif warnings:
        kind = "warning"
        headline = f"No errors; {_plural(len(warnings), 'warning')} worth a look."
    elif ran := sum(c.status in ("passed", "failed") for c in report.checks):
        kind = "ok"
        headline = f"No problems found: {_plural(ran, 'check')} ran and found nothing wrong."
    elif not report.checks:  # a watched training run (`nndoctor run`, Monitor) has no playbook checks
        kind = "ok"
        headline = "No problems found."
    else:
        kind = "skipped"
        headline = "Nothing was checked: see why in the checks table below."
    todo = []
    for f in errors + warnings:
        where = f' <span class=at>at <code>{esc(f.location)}</code></span>' if f.location else ""
        action = prose(f.suggestions[0]) if f.suggestions else esc(f.title)
        todo.append(f'<li class={f.severity.value}><a href="#{anchors[id(f)]}">{_badge(f.severity.value)}'
                    f'<b>{esc(f.code)}</b> {esc(f.name)}</a>{where}<div class=do>{action}</div></li>')
    notes = _notes(report)
    return (f'<section class="verdict {kind}" id=verdict><p class=headline>{_badge(kind)}{esc(headline)}</p>'
            + (f"<h2>What to do</h2><ol class=todo>{''.join(todo)}</ol>" if todo else "")
            + "".join(f"<p class=note>{prose(n)}</p>" for n in notes) + "</section>")


def _notes(report: Report) -> list[str]:
    """What the reader must know about the run itself: unfinished checks, interruptions."""
    notes = []
    crashed = [c.name for c in report.checks if c.status == "crashed"]
    if crashed:
        notes.append(f"nndoctor could not finish {_plural(len(crashed), 'check')} ({', '.join(crashed)}): a bug in "
                     "nndoctor, please report it. The other results stand.")
    out_of_time = [c.name for c in report.checks if c.status == "skipped" and "time budget" in c.detail]
    if out_of_time:
        notes.append(f"The time budget ran out before {_plural(len(out_of_time), 'check')} could run; give more "
                     "with `--budget SECONDS`.")
    if report.meta.get("note"):
        notes.append(f"The run was {report.meta['note']}.")
    if report.meta.get("interrupted"):
        notes.append("The run was interrupted (Ctrl-C): later checks did not run.")
    if report.meta.get("user_state_restored"):
        notes.append("Your own code changed the model during the checks; nndoctor restored it.")
    return notes


def _overview(report: Report) -> str:
    """One chip per playbook step: did it pass, and with how many problems."""
    chips = []
    for step, heading in catalogue.STEPS.items():
        findings = [f for f in report.findings if f.step == step]
        checks = _shown_checks(report.checks, step)
        if not findings and not checks:
            continue
        n_err = sum(f.severity == Severity.ERROR for f in findings)
        n_warn = sum(f.severity == Severity.WARNING for f in findings)
        ran = any(c.status in ("passed", "failed") for c in checks) or bool(findings)
        kind = "error" if n_err else "warning" if n_warn else "ok" if ran else "skipped"
        label = ", ".join(x for x in (_plural(n_err, "error") if n_err else "",
                                      _plural(n_warn, "warning") if n_warn else "") if x)
        label = label or ("passed" if ran else "not checked")
        chips.append(f'<li class={kind}><a href="#step-{step}"><span class=label>{esc(heading)}</span>'
                     f"<span class=state>{esc(label)}</span></a></li>")
    return f"<nav class=steps aria-label='playbook steps'><ol>{''.join(chips)}</ol></nav>" if chips else ""


def _run_curve(report: Report) -> str:
    """The loss curve of a `run`, with the steps where findings were raised marked."""
    loss = _extras(report).get("loss_curve")
    if loss is None:
        return ""
    steps = report.meta.get("steps")
    if isinstance(loss, list) and isinstance(steps, int) and 1 < len(loss) < steps:
        loss = {"steps": [i * steps / len(loss) for i in range(len(loss))], "loss": loss}
    markers = [(float(f.evidence["step"]), f.code) for f in report.findings
               if f.severity != Severity.INFO and isinstance(f.evidence.get("step"), int)]
    svg = _safe_plot(lambda: plots.curves_plot({"training loss": loss}, title="Loss during the run",
                                               markers=markers))
    lr = _extras(report).get("lr_curve")  # the LR per step (max over param groups), downsampled like the loss
    if svg and isinstance(lr, list) and isinstance(steps, int) and 1 < len(lr) < steps:
        lr = {"steps": [i * steps / len(lr) for i in range(len(lr))], "loss": lr}
    lr_svg = _safe_plot(lambda: plots.curves_plot({"learning rate": lr}, title="Learning rate during the run",
                                                  ylabel="learning rate", markers=markers)) if svg and lr else ""
    lr_fig = _figure(lr_svg, "Learning rate per optimizer step (max over param groups).") if lr_svg else ""
    return f"<section class=run><h2>Training run</h2>{_figure(svg, 'Training loss per optimizer step.')}{lr_fig}" \
        "</section>" if svg else ""


# ----- steps and findings ----------------------------------------------------------------------------
def _step_section(report: Report, step: str, heading: str, findings: list[Finding], anchors: dict[int, str]) -> str:
    checks = _shown_checks(report.checks, step)
    figures = _step_figures(report, step, findings)
    if not findings and not checks and not figures:
        return ""
    problems = [f for f in findings if f.severity != Severity.INFO]
    infos = [f for f in findings if f.severity == Severity.INFO]
    parts = [f'<section class=step id="step-{step}"><h2>{esc(heading)} '
             f"<small>{esc(step_counts(checks))}</small></h2>"]
    if not problems and (checks or not infos):  # a step with no checks of its own (live EFF info): findings only
        ran = any(c.status in ("passed", "failed") for c in checks)
        parts.append(f'<p class="clean {"ok" if ran else "skipped"}">'
                     f'{_badge("ok" if ran else "skipped")}'
                     f'{"Nothing wrong found." if ran else "Not checked: see the checks table below."}</p>')
    parts += [_finding_card(f, anchors[id(f)]) for f in problems]
    if infos:
        parts.append("<div class=infos><h3>Measurements</h3>"
                     + "".join(_finding_card(f, anchors[id(f)]) for f in infos) + "</div>")
    parts += figures
    parts.append("</section>")
    return "\n".join(parts)


def _finding_card(f: Finding, anchor: str) -> str:
    sev = f.severity.value
    where = f"<p class=where><span>where</span> <code>{esc(f.location)}</code></p>" if f.location else ""
    fixes = "".join(f"<li>{prose(s)}</li>" for s in f.suggestions)
    fix = f"<div class=fix><h4>Fix</h4><ul>{fixes}</ul></div>" if fixes else ""
    hint = f"<p class=hint>{prose(f.hint)}</p>" if f.severity != Severity.INFO else ""
    return (f'<article class="finding {sev}" id="{anchor}" data-code="{esc(f.code)}">'
            f"<header>{_badge(sev)}<span class=code>{esc(f.code)}</span> <span class=name>{esc(f.name)}</span>"
            f"<span class=sev>{esc(sev)}</span></header>"
            f"<h3>{esc(f.title)}</h3>{where}<p class=message>{prose(f.message)}</p>{fix}"
            f"{_evidence(f.to_dict()['evidence'])}{hint}</article>")


def _badge(kind: str) -> str:
    return f'<span class="badge {kind}" aria-hidden=true>{_ICON.get(kind, "&ndash;")}</span>'


def _evidence(evidence: dict[str, Any]) -> str:
    if not evidence:
        return ""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{_value(v)}</td></tr>" for k, v in evidence.items())
    return f"<details class=evidence><summary>Evidence</summary><table>{rows}</table></details>"


def _value(v: Any) -> str:
    """One evidence value: numbers rounded, long number lists summarised, structures as JSON."""
    if isinstance(v, float):
        return esc(f"{v:.4g}")
    if isinstance(v, (bool, int)) or v is None:
        return esc(json.dumps(v))
    if isinstance(v, str):
        return f"<span class=str>{esc(v)}</span>"
    values = plots.numbers(v) if isinstance(v, list) else None
    if values is not None and len(values) > 8:
        finite = [x for x in values if math.isfinite(x)]
        span = f"; min {min(finite):.4g}, max {max(finite):.4g}" if finite else ""
        return esc(f"{len(values)} values: first {values[0]:.4g}, last {values[-1]:.4g}{span}")
    text = json.dumps(v, indent=1)
    if len(text) > 3000:
        text = text[:3000] + "\n..."
    return f"<pre>{esc(text)}</pre>"


# ----- figures -----------------------------------------------------------------------------------------
def _extras(report: Report) -> dict[str, Any]:
    extras = report.meta.get("extras")
    return extras if isinstance(extras, dict) else {}


def _step_figures(report: Report, step: str, findings: list[Finding]) -> list[str]:
    extras = _extras(report)
    flagged = [f.location for f in findings if f.severity != Severity.INFO and f.location.startswith("model.")]
    makers: list[tuple[Callable[[], str | None], str]] = []
    if step == "bugs":
        makers.append((lambda: _activation_plot(extras, findings, flagged),
                       "Per layer: the share of units that never activate (dead) or sit at the extremes of their "
                       "range (saturated), on one batch. Red: layers named in a finding."))
    if step == "overfit":
        makers.append((lambda: _overfit_plot(extras),
                       "Training a copy on one fixed batch: a healthy model drives the loss towards zero. Thick "
                       "line: the model as given; dashed: experiments that confirm a diagnosis; thin solid: a fix "
                       "verified on the copy (one colour per change)."))
        makers.append((lambda: _gradient_plot(extras, findings, flagged),
                       "Per layer (median over the single-batch run): the gradient norm, and the size of one update "
                       "relative to the weights: 1e-4 to 1e-1 is typical; far below, the layer barely learns; near "
                       "1 or above, training is unstable. Red: layers named in a finding; 0: no gradient at all."))
    if step == "compare":
        makers.append((lambda: _compare_plot(extras),
                       "The model against simple baselines fitted on your data, chance, your known results, and "
                       "the model with its inputs removed, all on the same samples and metric."))
    return [_figure(svg, caption) for make, caption in makers if (svg := _safe_plot(make))]


def _overfit_plot(extras: dict[str, Any]) -> str | None:
    overfit = extras.get("overfit") if isinstance(extras.get("overfit"), dict) else {}
    curves = overfit.get("curves")
    return plots.curves_plot(curves, title="Overfitting a single batch",
                             ylabel=str(overfit.get("ylabel") or "loss")) if isinstance(curves, dict) else None


def _layer_rows(extras: dict[str, Any], key: str, findings: list[Finding], prefixes: tuple[str, ...]) -> list[dict]:
    """Per-layer rows from extras[key]["layers"]; without them, the "layers" of matching findings, merged."""
    rows: dict[str, dict] = {}
    table = extras.get(key, {}).get("layers") if isinstance(extras.get(key), dict) else None
    sources = [table] if table else [f.evidence.get("layers") for f in findings if f.code.startswith(prefixes)]
    for layers in sources:
        for row in layers if isinstance(layers, list) else []:
            if isinstance(row, dict) and isinstance(row.get("name"), str):
                rows.setdefault(row["name"], {}).update(row)
    return list(rows.values())


def _gradient_plot(extras: dict[str, Any], findings: list[Finding], flagged: list[str]) -> str | None:
    rows = _layer_rows(extras, "gradients", findings, ("GRD",))
    panels = [{"values": [plots.number(r.get("grad_norm")) for r in rows], "xlabel": "gradient norm", "log": True},
              {"values": [plots.number(r.get("update_ratio")) for r in rows], "xlabel": "update / weight",
               "log": True, "band": (1e-4, 1e-1)}]
    return plots.layer_bars_plot([r["name"] for r in rows], panels, title="Gradient flow per layer", flagged=flagged)


def _activation_plot(extras: dict[str, Any], findings: list[Finding], flagged: list[str]) -> str | None:
    rows = _layer_rows(extras, "activations", findings, ("NUM004", "NUM005"))
    panels = [{"values": [plots.number(r.get("dead_fraction")) for r in rows], "xlabel": "dead fraction",
               "limit": (0, 1)},
              {"values": [plots.number(r.get("saturated_fraction")) for r in rows], "xlabel": "saturated fraction",
               "limit": (0, 1)}]
    return plots.layer_bars_plot([r["name"] for r in rows], panels, title="Activations per layer", flagged=flagged)


def _compare_plot(extras: dict[str, Any]) -> str | None:
    table = extras.get("compare")
    if not isinstance(table, dict) or not isinstance(table.get("rows"), list):
        return None
    metric = str(table.get("metric") or "score")
    split = f" on {table['split']}" if table.get("split") else ""
    return plots.compare_plot(table["rows"], metric=metric, title=f"Model vs baselines: {metric}{split}")


def _safe_plot(make: Callable[[], str | None]) -> str | None:
    """A plot that cannot be drawn must not cost the reader the report: it is left out."""
    try:
        with warnings.catch_warnings():  # matplotlib's complaints about odd data are not the reader's business
            warnings.simplefilter("ignore")
            return make()
    except Exception:  # malformed data from a check; the findings above still say everything
        return None


def _figure(svg: str, caption: str) -> str:
    return f"<figure class=plot>{svg}<figcaption>{esc(caption)}</figcaption></figure>"


# ----- bottom of the page ------------------------------------------------------------------------------
def _shown_checks(checks: list[CheckRecord], step: str) -> list[CheckRecord]:
    return [c for c in checks if c.step == step and c.detail != "not selected"]


def _checks_table(checks: list[CheckRecord]) -> str:
    shown = [c for c in checks if c.detail != "not selected"]
    if not shown:
        return ""
    rows = "".join(
        f"<tr class={esc(c.status)}><td>{_STATUS_ICON.get(c.status, '')} {esc(c.status)}</td><td>{esc(c.name)}</td>"
        f"<td>{esc(catalogue.STEPS.get(c.step, c.step))}</td><td class=num>{c.seconds:.2f}</td>"
        f"<td>{prose(c.detail)}</td></tr>" for c in shown)
    return (f"<section class=checks id=checks><details><summary>All {_plural(len(shown), 'check')}</summary>"
            "<table><thead><tr><th>status</th><th>check</th><th>step</th><th>seconds</th><th>detail</th></tr>"
            f"</thead><tbody>{rows}</tbody></table></details></section>")


def _footer(report: Report) -> str:
    copies = (" nndoctor ran on copies: your model, optimizer and random number generators were left as they were."
              if report.meta.get("user_state_changed") == [] else "")  # the playbook checked it
    return ("<footer>Every code is explained by <code>nndoctor codes CODE</code>. Silence one with "
            f"<code>--ignore CODE</code>.{copies}</footer>")


_CSS = """
:root{--err:#b42318;--err-bg:#fef3f2;--warn:#b54708;--warn-bg:#fffaeb;--info:#175cd3;--info-bg:#eff8ff;
--ok:#067647;--ok-bg:#ecfdf3;--muted:#5b6475;--line:#e4e7ec;--ink:#101828}
*{box-sizing:border-box}
body{margin:0;background:#f6f7f9;color:var(--ink);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:62rem;margin:0 auto;padding:1.5rem 1.25rem 3rem}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;font-size:.88em}
code{background:#eef0f3;border-radius:4px;padding:.05em .3em;overflow-wrap:anywhere}
pre{margin:0;white-space:pre-wrap;overflow-wrap:anywhere;max-height:18rem;overflow:auto}
h1{font-size:1.6rem;margin:0}h2{font-size:1.2rem;margin:0 0 .6rem}h3{font-size:1rem;margin:.2rem 0 .4rem}
h4{margin:.6rem 0 .2rem;font-size:.85rem;text-transform:uppercase;letter-spacing:.04em;color:var(--ok)}
a{color:inherit}
.top{margin-bottom:1rem}.facts{color:var(--muted);margin:.2rem 0 0;font-size:.9rem}
.badge{display:inline-flex;align-items:center;justify-content:center;width:1.35em;height:1.35em;
border-radius:50%;color:#fff;font-weight:700;font-size:.8em;margin-right:.45em;flex:none;vertical-align:.1em}
.badge.error{background:var(--err)}.badge.warning{background:var(--warn)}.badge.info{background:var(--info)}
.badge.ok{background:var(--ok)}.badge.skipped{background:#98a2b3}
.verdict{border-radius:10px;padding:1rem 1.25rem;margin:0 0 1rem;border:1px solid var(--line);
border-left:8px solid var(--muted);background:#fff}
.verdict.error{border-left-color:var(--err);background:var(--err-bg)}
.verdict.warning{border-left-color:var(--warn);background:var(--warn-bg)}
.verdict.ok{border-left-color:var(--ok);background:var(--ok-bg)}
.headline{font-size:1.25rem;font-weight:650;margin:0 0 .4rem}
.verdict h2{font-size:.9rem;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);margin:.8rem 0 .3rem}
.todo{margin:0;padding-left:1.4rem}.todo li{margin:.35rem 0}
.todo a{text-decoration:none}.todo a:hover b{text-decoration:underline}
.todo .at{color:var(--muted)}.todo .do{margin-left:1.8em;color:#344054}
.note{margin:.5rem 0 0;color:#344054;font-size:.92rem}
.steps ol{list-style:none;display:flex;flex-wrap:wrap;gap:.5rem;padding:0;margin:0 0 1.2rem}
.steps li{flex:1 1 11rem}.steps a{display:block;text-decoration:none;background:#fff;border:1px solid var(--line);
border-top:4px solid #98a2b3;border-radius:8px;padding:.45rem .7rem}
.steps .label{display:block;font-size:.85rem;color:var(--muted)}.steps .state{font-weight:650}
.steps .error a{border-top-color:var(--err)}.steps .error .state{color:var(--err)}
.steps .warning a{border-top-color:var(--warn)}.steps .warning .state{color:var(--warn)}
.steps .ok a{border-top-color:var(--ok)}.steps .ok .state{color:var(--ok)}
.step,.run,.checks{background:#fff;border:1px solid var(--line);border-radius:10px;padding:1rem 1.25rem;
margin:0 0 1rem}
.step h2 small{font-weight:400;color:var(--muted);font-size:.8rem;margin-left:.4rem}
.clean{margin:.2rem 0;display:flex;align-items:center}.clean.ok{color:var(--ok)}.clean.skipped{color:var(--muted)}
.finding{border:1px solid var(--line);border-left:6px solid var(--muted);border-radius:8px;padding:.7rem 1rem;
margin:.7rem 0;background:#fff}
.finding.error{border-left-color:var(--err)}.finding.warning{border-left-color:var(--warn)}
.finding.info{border-left-color:var(--info);padding:.45rem .9rem;font-size:.93rem}
.finding header{display:flex;align-items:center;flex-wrap:wrap;gap:.2rem}
.finding .code{font-weight:700;font-family:ui-monospace,Menlo,Consolas,monospace}
.finding .name{color:var(--muted)}
.finding .sev{margin-left:auto;font-size:.75rem;text-transform:uppercase;letter-spacing:.05em;font-weight:700}
.finding.error .sev{color:var(--err)}.finding.warning .sev{color:var(--warn)}.finding.info .sev{color:var(--info)}
.finding.info h3{display:none}
.where{margin:.2rem 0}.where span{font-size:.8rem;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
.message{margin:.3rem 0}.fix ul{margin:.1rem 0;padding-left:1.3rem}.fix li{margin:.15rem 0}
.hint{font-size:.8rem;color:var(--muted);margin:.4rem 0 0}
.infos h3{font-size:.9rem;color:var(--muted);margin:1rem 0 0}
details summary{cursor:pointer;color:var(--muted);font-size:.85rem}
.evidence{margin-top:.4rem}.evidence table,.checks table{border-collapse:collapse;width:100%;font-size:.85rem}
.evidence th,.evidence td,.checks th,.checks td{border-bottom:1px solid var(--line);padding:.2rem .4rem;
text-align:left;vertical-align:top}
.evidence th{font-weight:600;white-space:nowrap;width:1%}.evidence .str{overflow-wrap:anywhere}
.checks .num{text-align:right}.checks tr.failed td:first-child{color:var(--err)}
.checks tr.crashed td:first-child{color:#7a2e98}.checks tr.skipped td{color:var(--muted)}
.checks tr.passed td:first-child{color:var(--ok)}
figure.plot{margin:1rem 0 .2rem}figure.plot svg{display:block;width:100%;height:auto;max-width:50rem}
figcaption{font-size:.85rem;color:var(--muted);margin-top:.2rem}
footer{color:var(--muted);font-size:.85rem;margin-top:1.5rem}
@media print{
body{background:#fff;font-size:10.5pt}main{max-width:none;padding:0}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
.steps{display:none}.step,.run,.checks,.verdict{border-radius:0;break-inside:auto}
.finding,figure.plot{break-inside:avoid}h2{break-after:avoid}
details::details-content{content-visibility:visible;display:block}
a{text-decoration:none}pre{max-height:none;overflow:visible}
}
"""
