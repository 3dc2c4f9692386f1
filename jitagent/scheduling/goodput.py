"""Moved to :mod:`jitagent.evaluation.goodput`. This alias stays only until the command line and the
robustness benchmark, still being edited by others, import the new name."""

from jitagent.evaluation.goodput import *  # noqa: F403
from jitagent.evaluation.goodput import __all__  # noqa: F401
