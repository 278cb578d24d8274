"""Chromium in headless mode: finding it, its flags, and a screenshot of a page.

Headless Chromium run as root needs ``--no-sandbox``; the other flags keep it
from reaching the network on its own (component updates, sync, background
requests) and from reading or writing a real profile.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from lang.errors import MMCheckError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) program, if one is installed."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found is not None:
            return found
    return None


def headless_flags(profile: Path) -> list[str]:
    """The flags of a headless, offline run with its own profile folder ``profile``."""
    flags = [
        "--headless",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.insert(1, "--no-sandbox")
    return flags


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1100, timeout: float = 120.0) -> None:
    """A PNG of ``page`` as Chromium shows it at its first step; :class:`MMCheckError` if that cannot be done."""
    chromium = find_chromium()
    if chromium is None:
        raise MMCheckError("--screenshot needs Chromium (chromium or google-chrome on PATH); none found")
    png = png.resolve()
    with tempfile.TemporaryDirectory(prefix="mmcheck-chromium-") as profile:
        command = [
            chromium,
            *headless_flags(Path(profile)),
            f"--window-size={width},{height}",
            f"--screenshot={png}",
            page.resolve().as_uri(),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise MMCheckError(f"chromium took more than {timeout:.0f}s to take the screenshot") from exc
    if done.returncode != 0 or not png.exists():
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise MMCheckError(f"chromium could not take the screenshot (exit {done.returncode}): {last}")
