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
