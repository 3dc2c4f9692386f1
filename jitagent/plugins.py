"""Add-ons plug into the core here, by entry point: the core imports no add-on by name.

An add-on distribution declares what it adds in its ``pyproject.toml``, one entry-point group per
kind of thing::

    [project.entry-points."jitagent.engines"]
    vllm = "jitagent_vllm.plugin:ENGINE"          # JITClient(engine="vllm"), jitagent bench --engine vllm

    [project.entry-points."jitagent.commands"]
    calibrate = "jitagent_vllm.plugin:CALIBRATE"  # jitagent calibrate

    [project.entry-points."jitagent.workloads"]
    langgraph = "jitagent_langgraph.plugin:WORKLOAD"   # jitagent bench --workload langgraph

:func:`load` finds a name in a group and loads it (importing the add-on then, not before). A name
nobody installed is a :class:`PluginNotFoundError` that names the distribution to install when the
name is one of jitagent's own add-ons; an add-on that is installed but cannot be imported (vLLM
missing, say) is one that says so. What each group's objects offer is the protocol beside it:
:class:`EnginePlugin`, :class:`CommandPlugin`, :class:`WorkloadPlugin`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Protocol

from jitagent.engines.protocol import Engine

__all__ = ["ENGINES", "COMMANDS", "WORKLOADS", "EnginePlugin", "CommandPlugin", "WorkloadPlugin",
           "PluginNotFoundError", "load", "names", "engine_plugin_serving"]

ENGINES = "jitagent.engines"
COMMANDS = "jitagent.commands"
WORKLOADS = "jitagent.workloads"

_KIND = {ENGINES: "engine", COMMANDS: "command", WORKLOADS: "workload"}
# jitagent's own add-ons, so that a missing one is named: (group, name) -> (distribution, where it is).
_OWN_ADDONS: Mapping[tuple[str, str], tuple[str, str]] = {
    (ENGINES, "vllm"): ("jitagent-vllm", "integrations/vllm"),
    (COMMANDS, "calibrate"): ("jitagent-vllm", "integrations/vllm"),
    (WORKLOADS, "langgraph"): ("jitagent-langgraph", "integrations/langgraph"),
}


class EnginePlugin(Protocol):
    """What a ``jitagent.engines`` entry point gives: an engine kind the core can start and serve."""

    description: str

    def start(self, *, model: str | None, policy: str) -> Engine:
        """A new engine serving ``model`` (the add-on's default when ``None``), scheduled by ``policy``."""
        ...

    def serves(self, engine: object) -> bool:
        """Whether ``engine`` is one of this kind (an engine object handed to ``JITClient``)."""
        ...

    def backend(self, engine: Any, model: str | None) -> Any:
        """The :class:`~jitagent.client.backend.Backend` that serves ``engine`` to the OpenAI handlers."""
        ...


class CommandPlugin(Protocol):
    """What a ``jitagent.commands`` entry point gives: a subcommand of ``jitagent``."""

    def add_parser(self, commands: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
        """Add the command's parser to ``jitagent``'s subcommands."""
        ...

    def run(self, args: argparse.Namespace) -> None:
        """Run the command (``ValueError`` for a one-line error)."""
        ...


class WorkloadPlugin(Protocol):
    """What a ``jitagent.workloads`` entry point gives: a workload ``jitagent bench`` runs itself."""

    description: str
    options: Callable[..., Any]   # the workload's options, from keyword arguments

    def run(self, config: Any, options: Any, *, progress: bool) -> tuple[Any, dict[str, Any]]:
        """Run ``config`` (a :class:`~jitagent.bench.suite.BenchConfig`): its result and extra figures."""
        ...


class PluginNotFoundError(ValueError):
    """No add-on installed provides that name (a ``ValueError``: a one-line error at the command line)."""


def names(group: str) -> list[str]:
    """The names installed add-ons provide in ``group``, sorted."""
    return sorted({ep.name for ep in entry_points(group=group)})


def load(group: str, name: str) -> Any:
    """The object the add-on providing ``name`` in ``group`` declares, loaded now.

    Raises:
        PluginNotFoundError: no installed add-on provides it (naming the distribution that does,
            for jitagent's own add-ons), or the one that does cannot be imported.
    """
    found = [ep for ep in entry_points(group=group) if ep.name == name]
    if not found:
        raise PluginNotFoundError(_missing(group, name))
    entry = found[0]
    try:
        return entry.load()
    except ImportError as exc:
        raise PluginNotFoundError(f"the {_KIND.get(group, group)} {name!r} of {_distribution(entry)} cannot be "
                                  f"loaded: {exc}") from None


def engine_plugin_serving(engine: object) -> EnginePlugin | None:
    """The installed engine plugin whose kind ``engine`` is, if any (loading each until one says so)."""
    for name in names(ENGINES):
        plugin: EnginePlugin = load(ENGINES, name)
        if plugin.serves(engine):
            return plugin
    return None


def _missing(group: str, name: str) -> str:
    kind = _KIND.get(group, group)
    installed = ", ".join(names(group)) or "none"
    own = _OWN_ADDONS.get((group, name))
    if own is None:
        return f"unknown {kind} {name!r} (installed add-ons provide: {installed})"
    distribution, folder = own
    return f"the {kind} {name!r} needs {distribution} (from a checkout: pip install ./{folder}; see the README)"


def _distribution(entry: EntryPoint) -> str:
    dist = entry.dist
    return dist.name if dist is not None else entry.value.split(":")[0].split(".")[0]
