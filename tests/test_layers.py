"""The import contracts in ``.importlinter`` hold: the core's layers, the core without its add-ons
or their frameworks, and the add-ons apart (``lint-imports`` run in-process; its report shows on failure)."""

from __future__ import annotations

from pathlib import Path

import pytest
from importlinter import cli as importlinter_cli   # the test extra installs import-linter

CONFIG = Path(__file__).resolve().parents[1] / ".importlinter"


def test_import_contracts_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CONFIG.parent)
    assert importlinter_cli.lint_imports(config_filenames=(str(CONFIG),), no_cache=True) == 0, \
        "an import breaks a contract of .importlinter: see the report above"
