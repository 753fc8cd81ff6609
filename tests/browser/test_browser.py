"""What a user sees: the widget in a real JupyterLab, the report in a real browser.

Run with ``python -m pytest -m browser tests/browser``. Needs Debian's ``chromium``
(``apt-get install chromium``) and the ``browser`` extra (Playwright's Python package and
JupyterLab). Screenshots go to ``$BROWSER_ARTIFACTS`` (default ``test-artifacts/``).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
HERE = Path(__file__).parent
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS", "test-artifacts"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: install Debian's package "
                    "(apt-get install chromium) or set CHROMIUM to its path")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright's Python package is missing: pip install -e '.[browser]'")
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    except Exception as exc:
        pw.stop()
        pytest.fail(f"Chromium at {CHROMIUM} could not start: {exc}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield b
    b.close()
    pw.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on loopback with a token, serving a folder with the widget notebook."""
    if shutil.which("jupyter", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("JupyterLab is missing: pip install -e '.[browser]'")
    root = tmp_path_factory.mktemp("lab")
    for name in ("widget_ui.ipynb", "live_ui.ipynb"):
        shutil.copy(HERE / name, root / name)
    port, token = _free_port(), secrets.token_hex(16)
    log = open(root / "lab.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", "--LabApp.news_url=", "--allow-root"],
        stdout=log, stderr=subprocess.STDOUT, cwd=root,
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
             "JUPYTER_CONFIG_DIR": str(root / "config")})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.terminate()
                pytest.fail(f"JupyterLab did not start: {(root / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield url, token
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # reported by the browser fixture
    PlaywrightTimeout = TimeoutError  # type: ignore[misc,assignment]


def _run_button(page):
    return page.locator("button.jupyter-button").filter(has_text=re.compile(r"^\s*Run\s*$"))


@pytest.fixture
def page(browser, request):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    yield page
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else True:
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-failure.png"))
    page.close()


# JupyterLab may reopen another test's notebook beside this one: only the visible
# panel's cells are the open notebook's.
VISIBLE_CELLS = ".jp-NotebookPanel:visible .jp-Cell .jp-InputArea-editor"


def _open_and_run_first_cell(page, url: str, token: str, notebook: str, rendered,
                             name: str) -> None:
    """Open ``notebook``, run its first cell as a user would, wait for ``rendered``."""
    page.goto(f"{url}/lab/tree/{notebook}?token={token}")
    page.wait_for_selector(".jp-Notebook", timeout=60_000)
    # The kernel is ready when the status bar says so.
    page.locator(".jp-StatusBar-TextItem", has_text="Idle").first.wait_for(timeout=120_000)
    for attempt in range(2):
        try:
            # The visible panel can be swapped as the click lands (JupyterLab reopening
            # another test's notebook): the cell is then looked up again.
            page.locator(VISIBLE_CELLS).first.click(timeout=30_000)
            page.keyboard.press("Shift+Enter")
            rendered.wait_for(timeout=60_000)
            return
        except PlaywrightTimeout:
            # A first start of a fresh environment can miss the keypress; try once more.
            page.screenshot(path=str(ARTIFACTS / f"{name}-not-rendered-{attempt}.png"))
            if attempt:
                raise


def test_exec_widget_in_jupyterlab(page, lab):
    run = _run_button(page)
    _open_and_run_first_cell(page, *lab, "widget_ui.ipynb", run, "widget")
    page.screenshot(path=str(ARTIFACTS / "widget-rendered.png"))

    run.click()
    badge = page.locator(".ka-badge").first
    badge.wait_for(timeout=30_000)
    assert badge.inner_text().strip() == "exit 0"
    output = page.locator(".widget-output").first
    page.wait_for_function("""() => [...document.querySelectorAll('.widget-output')]
        .some(e => e.innerText.includes('hello-from-browser'))""", timeout=30_000)
    text = output.inner_text()
    assert "<b>bold</b>" in text and "hello-from-browser" in text
    assert output.locator("b").count() == 0  # shown as text, not rendered
    page.screenshot(path=str(ARTIFACTS / "widget-after-run.png"))

    command = page.locator("input[placeholder='command (run through sh -c)']")
    command.fill("echo long; exec sleep 60")
    command.press("Tab")
    time.sleep(0.5)
    run.click()
    page.wait_for_function("""() => [...document.querySelectorAll('.widget-output')]
        .some(e => e.innerText.includes('long'))""", timeout=30_000)
    page.locator("button.jupyter-button").filter(has_text=re.compile(r"^\s*Stop\s*$")).click()
    cancelled = page.locator(".ka-badge.ka-cancelled")
    cancelled.wait_for(timeout=15_000)
    assert cancelled.inner_text().strip() == "cancelled"
    page.screenshot(path=str(ARTIFACTS / "widget-after-stop.png"))


def test_live_view_in_jupyterlab_shows_an_injected_incident(page, lab):
    _open_and_run_first_cell(page, *lab, "live_ui.ipynb",
                             page.locator(".koyeb-live-board"), "live")
    cells = page.locator(VISIBLE_CELLS)
    page.wait_for_function("""() => [...document.querySelectorAll('.koyeb-live-view')]
        .some(e => e.innerText.includes('live'))""", timeout=30_000)
    assert page.locator(".koyeb-live-view img").count() == 1  # the chart
    page.screenshot(path=str(ARTIFACTS / "live-view-before.png"))
    # Run the next cell, which injects the incident, and time its arrival on screen.
    cells.nth(1).click()
    page.keyboard.press("Shift+Enter")
    started = time.monotonic()
    page.wait_for_function("""() => [...document.querySelectorAll('.koyeb-live-feed')]
        .some(e => e.innerText.includes('-> UNHEALTHY'))""", timeout=30_000)
    elapsed = time.monotonic() - started
    page.screenshot(path=str(ARTIFACTS / "live-view-incident.png"))
    # Two polls of 1 s, plus the cell's own run and the round trip to the browser.
    assert elapsed < 2 * 1.0 + 3.0, elapsed
    header = page.locator(".koyeb-live-board tr").first.inner_text()
    assert "UNHEALTHY" in header  # the board counts them


def test_report_in_a_browser(browser, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "koyeb_analytics", "report", "--simulate",
                           "--window", "7d", "--quiet", "--out", "koyeb-report.html"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.goto((tmp_path / "koyeb-report.html").as_uri())
    # The first screen answers: is this real data, how available, against what target.
    assert page.locator("#simulated-label").is_visible()
    assert "Simulated data" in page.locator("#simulated-label").inner_text()
    summary = page.locator("#summary-table").inner_text()
    assert "against a target of 99.900%" in summary and "Worst service" in summary
    assert page.locator("#summary-table").bounding_box()["y"] < 1000  # above the fold
    page.screenshot(path=str(ARTIFACTS / "report-first-screen.png"))
    # Names, not UUIDs, in the service table; the target's legend described.
    services = page.locator("#uptime-table td:first-child").all_inner_texts()
    assert services and all("/" in s for s in services)
    assert not any(re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", s) for s in services)
    assert "target, 99.900%" in page.locator("#uptime-caption").inner_text()
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? "
                                       "i.naturalWidth : 0)")
    assert len(widths) == 4 and all(w > 0 for w in widths), widths
    for table in ("uptime-table", "incident-table", "findings-table", "query-table",
                  "hours-table", "vocabulary-table"):
        assert page.locator(f"#{table} tr").count() >= 2, table
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    page.close()
