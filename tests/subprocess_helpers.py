"""Running a snippet of Python in a fresh interpreter, as a user's script runs (the plugin from this checkout)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def run_script(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -c code`` with this checkout's ``src`` first on the path; its output captured as text."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          timeout=timeout, env=env)
