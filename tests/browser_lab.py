"""JupyterLab in Debian's Chromium through Playwright, for the browser tests: a Lab server in a
directory of its own and a page, each once per module; writing and opening a notebook, running a
cell, reading its output, screenshots (to test-artifacts/, and to docs/ with
LLM_MAGICS_SCREENSHOTS=docs). Without Chromium or Playwright the tests that use them skip."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    port, token = free_port(), secrets.token_hex(12)
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.workspaces_dir={root / '.workspaces'}",  # not the user's ~/.jupyter: nothing restored from there
        f"--LabApp.user_settings_dir={root / '.settings'}",  # a theme a test switches to stays in this lab
        "--LabApp.expose_app_in_browser=True",
        "--allow-root",
    ]
    log = (root / "server.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.2)
    yield {"root": root, "url": f"http://127.0.0.1:{port}", "token": token}
    server.terminate()
    server.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")  # a page of its own per module: one notebook open at a time
def page(lab):
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (scripts/test.sh installs it as root)")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        yield page
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "last-page.png", full_page=True)  # what the page showed at the end
        (ARTIFACTS / "last-page.txt").write_text(current_notebook(page).inner_text())
        browser.close()


def open_notebook(page, lab, name: str, cells: list[str]) -> None:
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in cells],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    nbformat.write(notebook, lab["root"] / name)
    # A workspace of its own: JupyterLab restores the tabs a workspace had open, so a notebook
    # opened in the shared default workspace would sit beside the one an earlier module left there.
    workspace = f"{Path(name).stem}-{secrets.token_hex(4)}"
    page.goto(f"{lab['url']}/lab/workspaces/{workspace}/tree/{name}?token={lab['token']}")
    page.wait_for_function(
        "window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'", timeout=120_000
    )


def run_cell(page, index: int) -> None:
    page.evaluate(
        f"""() => {{
        const panel = window.jupyterapp.shell.currentWidget;
        panel.content.activeCellIndex = {index};
        window.jupyterapp.commands.execute('notebook:run-cell');
    }}"""
    )


def current_notebook(page):
    """The notebook in the tab on show (a hidden tab's notebook stays in the page)."""
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")


def cell_output(page, index: int):
    return current_notebook(page).locator(".jp-Cell").nth(index).locator(".jp-OutputArea")


def screenshot(locator, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    locator.page.add_style_tag(content=".Toastify { display: none !important; }")  # JupyterLab's news question
    locator.screenshot(path=ARTIFACTS / name)
    if os.environ.get("LLM_MAGICS_SCREENSHOTS") == "docs":
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copy(ARTIFACTS / name, REPO / "docs" / name)


# The WCAG contrast ratio of an element's text (its ``color``, or ``fill`` for SVG text) on what is
# under it: the backgrounds of it and its ancestors, composited down to the page (white under all).
CONTRAST = """(element) => {
  const parse = (css) => {
    let m = css.match(/^rgba?\\(([^)]*)\\)$/);
    if (m) {
      const [r, g, b, a] = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
      return [r / 255, g / 255, b / 255, a === undefined ? 1 : a];
    }
    m = css.match(/^color\\(srgb ([^)]*)\\)$/);
    if (m) {
      const [r, g, b, a] = m[1].split(/[ \\/]+/).filter(Boolean).map(Number);
      return [r, g, b, a === undefined ? 1 : a];
    }
    throw new Error("a colour this check does not read: " + css);
  };
  const over = (top, under) => [0, 1, 2].map((i) => top[i] * top[3] + under[i] * (1 - top[3])).concat([1]);
  const layers = [];
  for (let node = element; node; node = node.parentElement) {
    const background = parse(getComputedStyle(node).backgroundColor);
    if (background[3] > 0) layers.push(background);
  }
  let under = [1, 1, 1, 1];
  for (const layer of layers.reverse()) under = over(layer, under);
  const style = getComputedStyle(element);
  const text = over(parse(element instanceof SVGElement ? style.fill : style.color), under);
  const luminance = (c) => {
    const [r, g, b] = c.slice(0, 3).map((v) => (v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [light, dark] = [luminance(text), luminance(under)].sort((a, b) => b - a);
  return (light + 0.05) / (dark + 0.05);
}"""


def contrasts(locator) -> list[float]:
    """The contrast ratio of each visible element the locator finds."""
    return [element.evaluate(CONTRAST) for element in locator.all() if element.is_visible()]


def change_theme(page, theme: str) -> None:
    """Switches JupyterLab's theme ('JupyterLab Light', 'JupyterLab Dark') and waits for it."""
    page.evaluate(f"() => window.jupyterapp.commands.execute('apputils:change-theme', {{theme: '{theme}'}})")
    page.wait_for_function(f"document.body.dataset.jpThemeName === '{theme}'", timeout=30_000)
    page.wait_for_timeout(500)  # the theme's stylesheet applies
