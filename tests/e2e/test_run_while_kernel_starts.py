"""A cell run while the notebook's kernel session is still being created runs once it exists.

An encrypted notebook shows (and is editable) before its kernel session exists: JupyterLab
creates the session once the document is populated (with a membership log, after our role is
known). JupyterLab's own runCell, pressed in that window, finds no session, clears the cell and
runs nothing (seen in tests/hub/test_hub_browser.py: bob's Ctrl+Enter right after opening the
notebook did nothing). Here the server's answer to the session request is held until the cell
has been run (a real JupyterLab, a real kernel: only the moment the answer arrives is chosen).
"""

from __future__ import annotations

import secrets

from .helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    NB,
    TOKEN,
    _cell_editor,
    _new_page,
    _wait_app,
)


def test_a_cell_run_while_the_kernel_session_is_created_runs(lab):
    from playwright.sync_api import sync_playwright

    marker = f"RUNWHILESTARTING{secrets.token_hex(4)}"
    logs: list[str] = []
    held = []

    def hold_session_start(route):
        if route.request.method == "POST":
            held.append(route)  # answered below, once the cell has been run
        else:
            route.continue_()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            _, page = _new_page(browser, "K", logs)
            page.goto(f"{lab.url}lab/workspaces/k?token={TOKEN}")
            _wait_app(page)
            page.route("**/api/sessions*", hold_session_start)
            with page.expect_request(
                lambda r: r.method == "POST" and "/api/sessions" in r.url, timeout=60_000
            ):
                page.click("#jp-MainMenu >> text=Encryption")
                page.click(".lm-Menu-content >> text=New Encrypted Notebook")
            page.wait_for_selector(".jp-secsync-StatusItem[data-state='synced']", timeout=30_000)
            assert len(held) == 1 and page.evaluate(
                "() => !window.jupyterapp.shell.currentWidget.sessionContext.session"
            ), "the kernel session must still be in creation"
            _cell_editor(page, 0).click()
            page.keyboard.type(f"print('{marker}' + '-' + str(6 * 7))")
            page.keyboard.press("Control+Enter")
            # the run has started (JupyterLab's run leaves edit mode first), the session not
            page.wait_for_function(
                "() => window.jupyterapp.shell.currentWidget.content.mode === 'command'"
            )
            assert page.evaluate(
                "() => !window.jupyterapp.shell.currentWidget.sessionContext.session"
            )
            held[0].continue_()
            page.unroute("**/api/sessions*")
            page.wait_for_function(
                "([s, t]) => [...document.querySelectorAll(s + ' .jp-OutputArea-output')]"
                ".some(e => e.textContent.includes(t))",
                arg=[NB, f"{marker}-42"],
                timeout=90_000,
            )
            prompt = page.locator(f"{NB} .jp-Cell").nth(0).locator(".jp-InputPrompt")
            assert prompt.inner_text().strip() == "[1]:", prompt.inner_text()
        finally:
            browser.close()
