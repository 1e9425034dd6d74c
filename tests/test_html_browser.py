"""The HTML report in a real headless browser (Debian's chromium driven by Playwright).

The page must load with no console error and no network request, show the key findings, keep user
strings inert (no dialog from a module named <script>...), fit a laptop screen and print. Screenshots
are saved to artifacts/ to look at.
"""
from __future__ import annotations

import os
import shutil

import pytest
from report_samples import XSS, demo_report, hostile_report, synthetic_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LAPTOP = {"width": 1366, "height": 768}

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not os.path.exists(CHROMIUM):
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


class Opened:
    """A report opened in a fresh page, with everything the page did recorded."""

    def __init__(self, browser, page_html: str, path: str):
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(page_html)
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page = browser.new_page(viewport=LAPTOP)
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.errors.append(m.text))
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto("file://" + os.path.abspath(path))
        self.page.wait_for_load_state("load")

    def assert_clean_load(self) -> None:
        assert self.errors == []
        assert [u for u in self.requests if not u.startswith("file://")] == []  # nothing from the network
        assert self.dialogs == []
        overflow = self.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, "the page scrolls sideways on a laptop screen"


def test_real_report_reads_at_a_glance(browser, tmp_path, artifacts_dir):
    report = demo_report()
    opened = Opened(browser, report.to_html(), str(tmp_path / "demo.html"))
    opened.assert_clean_load()
    page = opened.page
    verdict = page.locator("#verdict")
    assert verdict.is_visible() and verdict.bounding_box()["y"] < LAPTOP["height"] / 2  # seen first
    problems = report.errors + report.warnings
    assert problems, "the demo's planted bugs must be found"
    for f in problems:
        card = page.locator(f'article.finding[data-code="{f.code}"]').first
        assert card.is_visible()
        assert f.code in verdict.inner_text()  # listed in "What to do"
        if f.location:
            assert f.location in card.inner_text()
    for svg in page.locator("figure.plot svg").all():
        box = svg.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 80
    page.screenshot(path=os.path.join(artifacts_dir, "report-demo.png"), full_page=True)
    page.screenshot(path=os.path.join(artifacts_dir, "report-demo-first-screen.png"))
    page.emulate_media(media="print")
    assert page.locator("nav.steps").is_hidden()
    page.pdf(path=os.path.join(artifacts_dir, "report-demo.pdf"), format="A4")
    page.close()


def test_every_plot_renders(browser, tmp_path, artifacts_dir):
    opened = Opened(browser, synthetic_report(title="synthetic report").to_html(), str(tmp_path / "synthetic.html"))
    opened.assert_clean_load()
    page = opened.page
    assert page.locator("figure.plot svg").count() == 5
    for svg in page.locator("figure.plot svg").all():
        box = svg.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 80
    page.locator('article[data-code="LOS001"] details.evidence summary').click()
    assert page.locator('article[data-code="LOS001"] details.evidence table').is_visible()
    page.screenshot(path=os.path.join(artifacts_dir, "report-synthetic.png"), full_page=True)
    page.close()


def test_a_module_named_script_does_not_execute(browser, tmp_path, artifacts_dir):
    opened = Opened(browser, hostile_report().to_html(), str(tmp_path / "hostile.html"))
    page = opened.page
    assert page.evaluate("document.querySelectorAll('script').length") == 0
    opened.assert_clean_load()  # includes: no alert() dialog fired
    card = page.locator('article[data-code="RUN001"]')
    assert XSS in card.locator(".where").inner_text()  # shown as text
    assert XSS in card.locator(".message").inner_text()
    assert XSS in page.title()
    page.screenshot(path=os.path.join(artifacts_dir, "report-hostile.png"), full_page=True)
    page.close()


def test_the_notebook_view_shows_the_report_in_its_own_frame(browser, tmp_path, artifacts_dir):
    """``Report._repr_html_`` in a page standing in for a notebook: the report reads inside its frame, the
    host page's styles are untouched, and nothing from the report runs (tests/test_notebook.py executes
    a real notebook)."""
    report = hostile_report()
    host = ("<!doctype html><html><head><style>body{background:rgb(1, 2, 3);color:rgb(4, 5, 6)}</style></head>"
            f"<body><div class=output>{report._repr_html_()}</div><p id=after>next cell</p></body></html>")
    opened = Opened(browser, host, str(tmp_path / "notebook.html"))
    opened.assert_clean_load()  # includes: no alert() dialog fired, nothing from the network
    page = opened.page
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(1, 2, 3)"
    card = page.frame_locator("iframe").locator('article[data-code="RUN001"]')
    assert XSS in card.locator(".message").inner_text()
    box = page.locator("iframe").bounding_box()
    assert box and box["height"] > 300 and box["width"] > 600
    assert page.locator("#after").is_visible()
    page.screenshot(path=os.path.join(artifacts_dir, "report-notebook.png"))
    page.close()
