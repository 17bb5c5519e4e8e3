"""Lineage recorded on every MLflow run: who produced it, from what data, with which code."""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path


@functools.cache
def package_version() -> str:
    """Installed version of the ``loopline`` distribution."""
    try:
        return metadata.version("loopline")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@functools.cache
def git_revision() -> str:
    """Commit of the checkout the code runs from (``unknown`` outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    rev = out.stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True,
        timeout=5, check=False,
    ).stdout.strip()
    return f"{rev}-dirty" if dirty else rev
