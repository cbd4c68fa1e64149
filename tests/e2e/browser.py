"""Which Chromium the browser tests use, and `make browser`: find one that starts, else install one, else say in
one line what to install.

Order: `UNET_CHROMIUM` when set (that path only, nothing installed); Playwright's own Chromium; the system one
(Debian's `chromium`, Ubuntu's `chromium-browser`, Google Chrome). Each is started headless once to be sure it
works (a Playwright download without its system libraries is found but does not start). `python -m tests.e2e.browser`
(the Makefile's `browser` step) then tries `python -m playwright install chromium` and `apt-get install -y chromium`
(as root, or with `sudo -n`); `UNET_BROWSER_INSTALL=0` turns the installing off. When nothing works the browser
tests are skipped with `no_browser()` as the reason, or fail where `UNET_REQUIRE_BROWSER=1` (CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SYSTEM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
NO_BROWSER = (
    "No Chromium for the browser tests: install one with `sudo apt-get install -y chromium` (Debian/Ubuntu) "
    "or `.venv/bin/python -m playwright install chromium` (or set UNET_CHROMIUM=/path/to/chromium)"
)
INSTALL_TIMEOUT_S = 900
OWN = "Playwright's own Chromium"


def no_browser() -> str:
    """The one line that says what to install."""
    chosen = os.environ.get("UNET_CHROMIUM")
    outcome = "they fail (UNET_REQUIRE_BROWSER=1)" if required() else "they are skipped"
    return f"{f'UNET_CHROMIUM={chosen} does not start. ' if chosen else ''}{NO_BROWSER}; {outcome}"


def required() -> bool:
    """A missing browser fails the browser tests instead of skipping them (CI sets it)."""
    return os.environ.get("UNET_REQUIRE_BROWSER", "") not in ("", "0")


def candidates() -> list[str | None]:
    """Executables to try, in order; None stands for Playwright's own Chromium."""
    chosen = os.environ.get("UNET_CHROMIUM")
    if chosen:
        return [chosen]
    found: list[str | None] = [None]
    for name in SYSTEM_NAMES:
        path = shutil.which(name)
        if path and os.path.realpath(path) not in {os.path.realpath(p) for p in found if p}:
            found.append(path)
    return found


def launch(playwright, **options):
    """The first Chromium of `candidates()` that starts headless, and its executable (None: Playwright's own);
    (None, None) when none does."""
    for executable in candidates():
        if executable is not None and not Path(executable).is_file():
            continue
        try:
            browser = playwright.chromium.launch(
                executable_path=executable, headless=True, args=CHROMIUM_FLAGS, timeout=60_000, **options
            )
        except Exception:  # noqa: BLE001 - not installed, or installed without what it needs: try the next
            continue
        return browser, executable
    return None, None


def working_chromium() -> tuple[bool, str]:
    """(found, what): starts and closes the Chromium the tests would use."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser, executable = launch(playwright)
        if browser is None:
            return False, ""
        version = browser.version
        browser.close()
        return True, f"{executable or OWN} ({version})"


def _run(command: list[str], **kwargs) -> bool:
    print("  trying:", " ".join(command), flush=True)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, **kwargs)
    except (OSError, subprocess.TimeoutExpired) as error:
        print(f"  did not work: {error}", flush=True)
        return False
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        said = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "")
        print(f"  did not work (exit {done.returncode}): {said[:200]}", flush=True)
    return done.returncode == 0


def _installers() -> list[list[list[str]]]:
    """Install attempts, each a list of commands run in turn."""
    attempts = [[[sys.executable, "-m", "playwright", "install", "chromium"]]]
    if shutil.which("apt-get"):
        sudo: list[str] = []
        if os.geteuid() != 0:
            if not shutil.which("sudo") or subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode:
                return attempts  # apt-get needs root, and sudo would ask for a password
            sudo = ["sudo", "-n"]
        attempts.append([
            [*sudo, "apt-get", "update", "-qq"],
            [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", "chromium"],
        ])
    return attempts


def ensure() -> bool:
    """Find a working Chromium, installing one when none is found and installing is allowed; prints one line."""
    found, what = working_chromium()
    if not found and not os.environ.get("UNET_CHROMIUM") and os.environ.get("UNET_BROWSER_INSTALL", "1") != "0":
        print("No working Chromium for the browser tests; installing one", flush=True)
        for commands in _installers():
            if all(_run(command) for command in commands):
                found, what = working_chromium()
                if found:
                    break
    print(f"Browser tests use {what}" if found else no_browser(), flush=True)
    return found


if __name__ == "__main__":
    sys.exit(0 if ensure() or not required() else 1)
