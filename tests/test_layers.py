"""The import contracts in ``.importlinter`` hold: the core's layers, the core without its add-ons
or their frameworks, and the add-ons apart.

``lint-imports`` runs in a process of its own: in-process it configures logging with
``dictConfig``, which disables every logger that exists (jitagent's included) for the tests after it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / ".importlinter"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"   # the test extra installs import-linter


def test_import_contracts_are_kept() -> None:
    done = subprocess.run([str(LINT_IMPORTS), "--config", str(CONFIG), "--no-cache"], cwd=CONFIG.parent,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"an import breaks a contract of .importlinter:\n{done.stdout}{done.stderr}"
