"""Moved to :mod:`jitagent.inputs` (telemetry reads span files with it, below the benchmarks). This
alias stays only until the command line, being moved by another change, imports the new name."""

from jitagent.inputs import *  # noqa: F403
from jitagent.inputs import __all__  # noqa: F401
