"""The three views of a Report: terminal text, the self-contained HTML page with its plots, the JSON schema."""
from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
from importlib import resources

import jsonschema
import pytest
from helpers import validate
from report_samples import LONG_PATH, XSS, curve, demo_report, hostile_report, synthetic_report

from nndoctor.findings import CheckRecord, Finding
from nndoctor.report import Report
from nndoctor.report import plots
from nndoctor.report.terminal import make_console, print_report, render_text



def svgs(page: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", page, flags=re.S)


# ----- terminal --------------------------------------------------------------------------------------
def test_terminal_groups_by_step_errors_first_with_where_fix_and_verdict():
    text = render_text(synthetic_report())
    headings = [line for line in text.splitlines() if re.match(r"\d\. ", line)]
    assert [h.split("  ")[0] for h in headings] == [
        "1. Get the model to run", "2. The five common bugs", "3. Overfit a single batch",
        "4. Compare to known results"]
    bugs = text[text.index("2. The five common bugs"):text.index("3. Overfit")]
    assert bugs.index("ERROR    LOS001") < bugs.index("WARNING  DAT001") < bugs.index("WARNING  NUM004")
    assert "where: model.3" in bugs and "fix: Remove the final `nn.Softmax`" in bugs
    assert "silence with `--ignore LOS001`; details: `nndoctor codes LOS001`" in bugs
    assert "initial loss 2.302" in bugs  # the numbers
    assert "gradient-flow: ValueError: boom" in text  # crashed checks are said, not hidden
    assert "memory-fit: no memory budget given" in text and "ddp-replicas" not in text  # unselected: quiet
    last = text.rstrip().splitlines()[-1]
    assert last == "verdict: fix 3 errors first (CMP001, LOS001, OFB004); 3 warnings in 4.2 s; 1 unfinished check"


@pytest.mark.parametrize("width", [100, 72])
def test_terminal_lines_fit_the_width_with_long_messages_and_paths(width):
    finding = Finding("RUN001", "The forward crashed in " + LONG_PATH + " " + "x" * 230 + " shapes (64, 10) "
                      "and (20, 10) " * 12, location=LONG_PATH,
                      suggestions=["Reshape with `x.view(x.size(0), -1)` in " + LONG_PATH + " " * 3 + "now " * 40])
    report = Report(findings=[finding, *synthetic_report().findings],
                    checks=[CheckRecord("c" * 150, "skipped", 0.0, "because " * 40, "run")])
    text = render_text(report, width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert not [line for line in text.splitlines() if line != line.rstrip()]  # no trailing padding
    unwrapped = re.sub(r"\s+", "", text)
    assert re.sub(r"\s+", "", LONG_PATH) in unwrapped  # folded, not cut


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_plain_in_pipes_and_without_colour_under_no_color(monkeypatch):
    pipe = io.StringIO()
    print_report(synthetic_report(), make_console(pipe))
    assert "\x1b[" not in pipe.getvalue()  # not a terminal: no escape codes at all
    assert max(len(line) for line in pipe.getvalue().splitlines()) <= 100

    monkeypatch.setenv("NO_COLOR", "1")
    tty = FakeTerminal()
    print_report(synthetic_report(), make_console(tty))
    assert not re.search(r"\x1b\[[0-9;]*(3[0-9]|9[0-7])[;m]", tty.getvalue())  # bold allowed, colour not
    assert "ERROR    LOS001" in re.sub(r"\x1b\[[0-9;]*m", "", tty.getvalue())

    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("FORCE_COLOR", "1")
    coloured = FakeTerminal()
    print_report(synthetic_report(), make_console(coloured))
    assert "\x1b[1;31m" in coloured.getvalue()  # the control: colour does appear on a colour terminal


def test_terminal_verdict_for_clean_and_warning_only_reports():
    clean = Report(checks=[CheckRecord("one-training-step", "passed", 0.1, "", "run")], meta={"seconds": 1.0})
    assert render_text(clean).rstrip().splitlines()[-1] == "verdict: no problems found in 1.0 s"
    warn = Report(findings=[Finding("DAT001", "scale", severity="warning")],
                  checks=[CheckRecord("data-scale", "failed", 0.1, "DAT001", "bugs")])
    assert render_text(warn).rstrip().splitlines()[-1].startswith("verdict: no errors, 1 warning worth a look")
    unchecked = Report(checks=[CheckRecord("overfit", "skipped", 0.0, "the model does not run", "overfit")])
    assert render_text(unchecked).rstrip().splitlines()[-1].startswith("verdict: nothing was checked")
    assert "Nothing was checked" in unchecked.to_html()


# ----- HTML ------------------------------------------------------------------------------------------
def test_html_has_verdict_first_then_steps_with_errors_first():
    page = synthetic_report(title="nndoctor check my_setup.py").to_html()
    assert "<title>nndoctor check my_setup.py</title>" in page
    verdict = page[page.index('class="verdict error"'):page.index("</section>")]
    assert "3 errors, 3 warnings" in verdict
    todo = re.findall(r"<b>([A-Z]{3}\d{3})</b>", verdict)
    assert todo == ["LOS001", "OFB004", "CMP001", "DAT001", "NUM004", "GRD004"]  # errors first, in step order
    cards = re.findall(r'<article class="finding (\w+)" id="finding-\d+" data-code="(\w+)"', page)
    assert [c for _, c in cards] == ["LOS001", "DAT001", "NUM004", "OFB004", "GRD004", "OFB000", "CMP001"]
    card = page[page.index('data-code="LOS001"'):]
    card = card[:card.index("</article>")]
    for part in ("<code>model.3</code>", "initial loss 2.302", "<code>nn.Softmax</code>", "<details class=evidence>",
                 "<code>--ignore LOS001</code>", "<code>nndoctor codes LOS001</code>"):
        assert part in card
    assert "gradient-flow" in page and "could not finish" in page


def test_html_is_self_contained_and_printable():
    page = synthetic_report().to_html()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"<(script|link|iframe|object|embed|img)\b", page, flags=re.I)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page, flags=re.I)
    assert not re.search(r"@import|url\((?!#)", page)  # nothing but in-page references
    assert "@media print" in page


def test_html_plots_every_documented_key_and_only_those_present():
    page = synthetic_report().to_html()
    labels = re.findall(r'<svg role="img" aria-label="([^"]+)"', page)
    assert labels == ["Loss during the run", "Activations per layer", "Overfitting a single batch",
                      "Gradient flow per layer", "Model vs baselines: accuracy on validation data"]
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # several SVGs share one page: no id clashes
    bare = Report(findings=[Finding("LOS001", "m")],
                  checks=[CheckRecord("one-training-step", "passed", 0.1, "", "run")])
    assert svgs(bare.to_html()) == []


@pytest.mark.parametrize("extras", [
    {"overfit": "not a dict", "gradients": [1, 2], "activations": {"layers": "x"}, "compare": {"rows": None},
     "loss_curve": "nan"},
    {"overfit": {"curves": {"a": [], "b": ["x", None], "c": {"steps": [1], "loss": [1, 2]}}},
     "gradients": {"layers": [{"name": "a"}, {"grad_norm": 1}, {"name": "b", "grad_norm": "inf"}]},
     "activations": {"layers": [{"name": "a", "dead_fraction": None}]},
     "compare": {"rows": [{"name": "m", "value": None}, "junk"]}, "loss_curve": [math.nan, math.inf]},
    {"loss_curve": [[0, 1.0], [1, "nan"]], "gradients": {"layers": [{"name": "a", "grad_norm": 0.0,
                                                                      "update_ratio": -1.0}]}},
])
def test_html_with_malformed_plot_data_still_renders(extras):
    report = Report(findings=[Finding("OFB002", "boom", evidence={"curve": "not numbers", "curve_steps": [1, 2],
                                                                       "curves": {"a": "b"}})],
                    meta={"extras": extras})
    page = report.to_html()
    assert "OFB002" in page and page.rstrip().endswith("</html>")


def test_single_batch_plot_overlays_the_runs_of_extras_overfit(monkeypatch):
    drawn = []
    monkeypatch.setattr(plots, "curves_plot", lambda curves, **kw: drawn.append((kw["title"], list(curves))))
    synthetic_report().to_html()
    assert ("Overfitting a single batch", ["as given", "confirmation: lr 0.01", "OFB004 fixed"]) in drawn
    drawn.clear()  # a watched run's OFB finding carries the run's own curve: it is not a single-batch run
    Report(findings=[Finding("OFB004", "plateau", evidence={"curve": [2.3, 2.3, 2.3]})],
           meta={"extras": {"loss_curve": [2.3, 2.3, 2.3]}}).to_html()
    assert [title for title, _ in drawn] == ["Loss during the run"]


def test_report_of_a_watched_run_shows_its_loss_curve_with_the_findings_marked(monkeypatch):
    calls = []
    real = plots.curves_plot
    monkeypatch.setattr(plots, "curves_plot", lambda curves, **kw: calls.append(kw) or real(curves, **kw))
    losses = curve(300, rate=40) + [math.nan] * 5
    run = Report(findings=[Finding("NUM001", "NaN at step 300", location="model.2", evidence={"step": 300})],
                 meta={"seconds": 12.0, "extras": {"loss_curve": losses}})
    page = run.to_html()
    assert "<h2>Training run</h2>" in page and 'aria-label="Loss during the run"' in page
    assert calls[0]["markers"] == [(300.0, "NUM001")]
    assert "12.0 s" in page and "0 checks" not in page
    clean_run = Report(meta={"seconds": 3.0, "extras": {"loss_curve": curve()}})
    assert "No problems found." in clean_run.to_html()
    assert render_text(clean_run).rstrip().splitlines()[-1] == "verdict: no problems found in 3.0 s"


def test_report_of_a_real_monitored_loop_in_all_three_views():
    import torch
    from torch import nn

    import nndoctor

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=10.0)  # diverges: a finding with a loss curve
    x, y = torch.randn(256, 8), torch.randn(256, 1)
    with nndoctor.Monitor(model, optimizer) as monitor:
        for i in range(0, 256 * 4, 32):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x[i % 256:i % 256 + 32]), y[i % 256:i % 256 + 32])
            loss.backward()
            optimizer.step()
    report = monitor.report()
    validate(report)
    assert report.errors or report.warnings
    assert 'aria-label="Loss during the run"' in report.to_html()
    text = render_text(report)
    assert max(len(line) for line in text.splitlines()) <= 100 and "verdict: " in text


def test_a_diverging_curve_is_marked_where_it_stops():
    svg = plots.curves_plot({"run": [1.0, 3.0, 50.0, "inf", "nan"]}, title="t")
    assert svg is not None and svg.startswith("<svg")
    assert plots.curves_plot({"run": ["nan"]}, title="t") is None
    assert plots.curve({"steps": [0, 5], "loss": [1, 2]}) == ([0.0, 5.0], [1.0, 2.0])
    assert plots.curve([[0, 1], [2, 3]]) == ([0.0, 2.0], [1.0, 3.0])


def test_every_user_string_is_escaped_in_html():
    page = hostile_report().to_html()
    assert "<script" not in page.lower()
    assert "<b>x</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<code>&lt;script&gt;alert(1)&lt;/script&gt;</code>" in page  # backticks still become code
    assert len(svgs(page)) == 4  # the hostile names were drawn, as paths (no text elements)
    assert all("<text" not in svg for svg in svgs(page))


def test_a_deep_model_keeps_the_flagged_and_the_most_unusual_layers(monkeypatch):
    kept = []
    real = plots._keep_layers
    monkeypatch.setattr(plots, "_keep_layers", lambda *a: kept.append(real(*a)) or kept[-1])
    layers = [f"model.blocks.{i}" for i in range(100)]
    norms = [1e-2] * 100
    norms[50], norms[60], norms[70] = 1e-9, 1e3, 0.0  # vanishing, exploding, no gradient
    svg = plots.layer_bars_plot(layers, [{"values": norms, "xlabel": "gradient norm", "log": True}],
                                title="t", flagged=["model.blocks.33"])
    assert svg is not None and len(kept[0]) == plots.MAX_LAYERS
    assert {0, 4, 33, 50, 60, 70, 95, 99} <= set(kept[0])


def test_plot_labels_with_dollar_signs_are_text_not_tex():
    layers = ["model.$a$", "model.$\\frac{1}{0}$", "model.b$"]
    svg = plots.layer_bars_plot(layers, [{"values": [1.0, 2.0, 3.0], "xlabel": "x"}], title="$x$")
    assert svg is not None


def test_importing_nndoctor_does_not_import_matplotlib():
    code = "import sys, nndoctor; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ----- JSON schema ------------------------------------------------------------------------------------
def schema() -> dict:
    return json.loads(resources.files("nndoctor.report").joinpath("schema.json").read_text())


def test_schema_ships_in_the_package_and_is_valid():
    jsonschema.Draft202012Validator.check_schema(schema())
    validate(synthetic_report())
    validate(hostile_report())


@pytest.mark.parametrize("corrupt", [
    lambda d: d["findings"][0].pop("location"),
    lambda d: d["findings"][0].update(severity="fatal"),
    lambda d: d["findings"][0].update(code="LOS1"),
    lambda d: d["findings"][0].update(suggestions="one string"),
    lambda d: d["checks"][0].update(status="ok"),
    lambda d: d["checks"][0].update(seconds=-1),
    lambda d: d.pop("nndoctor_version"),
])
def test_schema_rejects_broken_reports(corrupt):
    doc = json.loads(synthetic_report().to_json())
    jsonschema.validate(doc, schema())
    corrupt(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema())


# ----- a real report ------------------------------------------------------------------------------------
def test_real_report_of_the_demo_in_all_three_views():
    report = demo_report()  # its JSON is validated against the schema
    assert report.errors or report.warnings
    text = render_text(report)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert text.rstrip().splitlines()[-1].startswith("verdict:")
    page = report.to_html()
    for f in report.errors + report.warnings:
        assert f'data-code="{f.code}"' in page


# ----- the REPL and notebooks (tests/test_notebook.py runs a real kernel) ----------------------------
def test_print_shows_the_terminal_text_and_repr_stays_short():
    report = synthetic_report()
    assert str(report) == render_text(report) and "\x1b[" not in str(report)
    assert repr(report).startswith("Report(") and "\n" not in repr(report)


def test_repr_html_is_the_page_in_a_sandboxed_frame():
    import html as html_lib

    report = hostile_report()
    frame = report._repr_html_()
    page = re.fullmatch(r'<iframe srcdoc="([^"]*)" sandbox="" [^>]*></iframe>', frame).group(1)
    page = html_lib.unescape(page)  # the whole page, its styles and CSP inside the frame
    assert page.startswith("<!doctype html>") and "Content-Security-Policy" in page and "<style>" in page
    assert all(f.code in page for f in report.findings)
    assert "<script" not in frame.lower() and XSS not in frame


def test_progress_display_shows_nothing_in_logs_unless_asked(capsys):
    from nndoctor.report.console import progress_display

    messages: list[str] = []
    with progress_display(messages.append) as progress:  # a callable is the caller's own display
        assert progress == messages.append
    for show in (None, False):  # pytest's stderr is no terminal, and there is no notebook here
        with progress_display(show) as progress:
            progress("step 1")
    assert capsys.readouterr().err == ""
    with progress_display(True) as progress:
        progress("step 1")
    assert capsys.readouterr().err == "nndoctor: step 1\n"
