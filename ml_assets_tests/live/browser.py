"""Headless Chromium (Debian's `chromium`, driven by Playwright) for end-to-end UI tests.

Playwright's own browser download cannot run on these machines, so the system browser is used
through `executable_path`; see `.ci/run` for the apt install.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying to reach Google's update and
# sync services, which these machines cannot reach.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO_ROOT = Path(__file__).resolve().parents[2]
# Git-ignored (/artifacts/); CI keeps the folder as the run's artifacts.
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"


def require_chromium() -> None:
    """Skip when the browser or Playwright is missing — except in CI, where that is a failure."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    if missing:
        reason = "real-browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@contextmanager
def chromium_page(*, width: int = 1600, height: int = 1000) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def dismiss_community_dialog(page, timeout_ms: int = 15_000) -> bool:
    """Skip the "Join the Dagster community" dialog that the first visit to a fresh instance
    opens over whatever page is shown; False when it never came (the instance has seen it).

    Skipping is remembered by the instance, so it does not come back. (A Playwright locator
    handler is no substitute: it runs only before the next action, so a screenshot taken
    right after a page load could still show the dialog.)
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(state="visible", timeout=timeout_ms)
    except PlaywrightTimeout:
        return False
    skip.click()
    skip.wait_for(state="hidden")
    return True


# Finite CSS transitions/animations still running (a dialog fading in); spinners loop forever
# and are left out.
_SETTLING = """() => document.getAnimations().every(
    a => a.playState !== "running" || a.effect?.getComputedTiming().iterations === Infinity)"""


def screenshot(page, name: str, *, settle: bool = True) -> Path:
    """Save `<name>.png` once transitions are done, so a fading-in dialog is not half-drawn."""
    if settle:
        page.wait_for_function(_SETTLING, timeout=10_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
