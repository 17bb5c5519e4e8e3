"""Headless Chromium (Debian's ``chromium`` package) for looking at the Loopline page as a person would: the DOM
it renders and screenshots. Used by ``python -m loopline_airflow.ui.shots`` and the render test.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
INSTALL_HINT = "install it with `apt-get install -y chromium` (Debian's package)"


class BrowserError(RuntimeError):
    """Chromium is missing or did not render the page; the message says which and what it printed."""


def chromium() -> str | None:
    """The path of a Chromium binary on PATH, or None."""
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


def _run(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    binary = chromium()
    if binary is None:
        raise BrowserError(f"no Chromium binary on PATH ({', '.join(CANDIDATES)}): {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="loopline-chromium-") as profile:
        # --no-sandbox: the sandbox needs user namespaces, which containers (and root) often do not have.
        command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--no-first-run", "--hide-scrollbars", "--mute-audio", f"--user-data-dir={profile}", *args]
        try:
            done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise BrowserError(f"chromium did not finish within {timeout:.0f} s: {' '.join(args)}") from exc
    if done.returncode != 0:
        raise BrowserError(f"chromium exited with {done.returncode} for {' '.join(args)}: "
                           f"{done.stderr.decode(errors='replace')[-2000:]}")
    return done


def dump_dom(url: str, *, timeout: float = 120.0) -> str:
    """The DOM Chromium built for ``url``, serialised (``--dump-dom``)."""
    return _run(["--dump-dom", url], timeout).stdout.decode("utf-8", errors="replace")


def screenshot(url: str, path: Path, *, width: int = 1400, height: int = 1800, timeout: float = 120.0) -> Path:
    """A PNG of ``url`` in a ``width`` × ``height`` window."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _run([f"--window-size={width},{height}", f"--screenshot={path}", url], timeout)
    if not path.is_file() or path.stat().st_size == 0:
        raise BrowserError(f"chromium wrote no screenshot of {url} to {path}")
    return path
