"""Add-ons plug into the core here, by entry point: the core imports no add-on by name.

An add-on distribution declares what it adds in its ``pyproject.toml``, one entry-point group per
kind of thing::

    [project.entry-points."jitagent.engines"]
    vllm = "jitagent_vllm.plugin:ENGINE"            # JITClient(engine="vllm"), jitagent bench --engine vllm

    [project.entry-points."jitagent.workloads"]
    langgraph = "jitagent_langgraph.plugin:WORKLOAD"   # jitagent bench --workload langgraph

:func:`load` finds a name in a group and loads it (importing the add-on then, not before). A name
nobody installed is a :class:`PluginNotFoundError` that names the distribution to install when the
name is one of jitagent's own add-ons; an add-on that is installed but cannot be imported (vLLM
missing, say) is one that says so. What each group's objects offer is the protocol beside it:
:class:`EnginePlugin`, :class:`WorkloadPlugin`.

The ``jitagent`` command's subcommands are not a group: argparse needs every subcommand's flags
before it parses, so each would import its add-on (vLLM: seconds) on every start of the command.
An add-on's command is a core subcommand whose work its plugin does (``jitagent calibrate``:
:meth:`EnginePlugin.calibrate`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Protocol

from jitagent.engines.protocol import Engine

if TYPE_CHECKING:  # the layers above: for the protocol's types only
    from jitagent.client.transport import NamedServer
    from jitagent.scheduling.request import PipelineContext
    from jitagent.slo import SLO
    from jitagent.telemetry.providers import Telemetry

__all__ = ["ENGINES", "WORKLOADS", "EnginePlugin", "WorkloadPlugin", "PluginNotFoundError", "load", "names",
           "engine_plugin_serving", "addon_packages"]

ENGINES = "jitagent.engines"
WORKLOADS = "jitagent.workloads"

_KIND = {ENGINES: "engine", WORKLOADS: "workload"}
# jitagent's own add-ons, so that a missing one is named: (group, name) -> (distribution, where it is).
_OWN_ADDONS: Mapping[tuple[str, str], tuple[str, str]] = {
    (ENGINES, "vllm"): ("jitagent-vllm", "integrations/vllm"),
    (WORKLOADS, "langgraph"): ("jitagent-langgraph", "integrations/langgraph"),
}


class EnginePlugin(Protocol):
    """What a ``jitagent.engines`` entry point gives: an engine kind the core can start, serve,
    benchmark and calibrate."""

    description: str
    settings: Callable[..., Any]   # the engine's settings (model=, policy=, profile=, max_num_seqs=, ...)

    def start(self, *, model: str | None, policy: str) -> Engine:
        """A new engine serving ``model`` (the add-on's default when ``None``), scheduled by ``policy``."""
        ...

    def serves(self, engine: object) -> bool:
        """Whether ``engine`` is one of this kind (an engine object handed to ``JITClient``)."""
        ...

    def server(self, engine: Any, *, model: str | None, default_slo: SLO | None,
               default_pipeline: PipelineContext | None, telemetry: Telemetry) -> NamedServer:
        """The OpenAI server that answers ``JITClient``'s requests from ``engine`` in-process (a
        :class:`~jitagent.client.transport.NamedServer`), serving the model as ``model`` (the
        engine's model name when ``None``). Calls that name
        no SLO or pipeline get ``default_slo`` and ``default_pipeline``; each call's span and
        metrics go to ``telemetry``."""
        ...

    def run_bench(self, config: Any, settings: Any, *, progress: bool) -> tuple[Any, Any]:
        """``jitagent bench --engine NAME``: every run of ``config`` (a
        :class:`~jitagent.bench.suite.BenchConfig`) on engines of these settings, in real time;
        the result and what the engine adds to it."""
        ...

    def calibrate(self, settings: Any, *, name: str | None, rounds: int) -> Any:
        """``jitagent calibrate``: a step-time profile fitted to an engine of these settings."""
        ...


class WorkloadPlugin(Protocol):
    """What a ``jitagent.workloads`` entry point gives: a workload ``jitagent bench`` runs itself."""

    description: str
    options: Callable[..., Any]   # the workload's options, from its flags as keyword arguments

    def check_policy(self, name: str) -> None:
        """``ValueError`` unless the workload can run ``name`` (a policy, or a variant of its own)."""
        ...

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
    except ImportError as exc:   # installed, but what it needs is not (vLLM, say)
        raise PluginNotFoundError(f"the {_KIND.get(group, group)} {name!r} needs {_distribution(entry)}, which "
                                  f"cannot be imported here: {exc}") from None


def engine_plugin_serving(engine: object) -> EnginePlugin | None:
    """The installed engine plugin whose kind ``engine`` is, if any (loading each until one says so)."""
    for name in names(ENGINES):
        plugin: EnginePlugin = load(ENGINES, name)
        if plugin.serves(engine):
            return plugin
    return None


def addon_packages() -> tuple[str, ...]:
    """The top-level packages of the installed add-ons (their loggers, say), found without importing them."""
    return tuple(sorted({ep.value.split(":")[0].split(".")[0] for group in _KIND for ep in entry_points(group=group)}))


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
