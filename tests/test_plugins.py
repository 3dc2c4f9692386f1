"""The add-on registry: the installed add-ons' entry points are found by name, and a name nobody
installed is one clear error naming what is installed (or the distribution to install)."""

from __future__ import annotations

import pytest

from jitagent import plugins
from jitagent.client import JITClient


def test_the_installed_addons_are_found_without_importing_them() -> None:
    assert "vllm" in plugins.names(plugins.ENGINES)
    assert "langgraph" in plugins.names(plugins.WORKLOADS)
    assert {"jitagent_vllm", "jitagent_langgraph"} <= set(plugins.addon_packages())


def test_a_workload_plugin_loads_as_its_protocol_says() -> None:
    graphs = plugins.load(plugins.WORKLOADS, "langgraph")
    assert "LangGraph" in graphs.description
    graphs.check_policy("jit+plain")
    with pytest.raises(ValueError):
        graphs.check_policy("no-such-policy")


def test_an_unknown_name_is_one_error_listing_what_is_installed() -> None:
    with pytest.raises(plugins.PluginNotFoundError, match=r"unknown engine 'tpu' \(installed add-ons provide: vllm\)"):
        plugins.load(plugins.ENGINES, "tpu")
    with pytest.raises(ValueError, match="unknown engine 'tpu'"):
        JITClient(engine="tpu")


def test_an_engine_object_no_addon_serves_is_refused() -> None:
    with pytest.raises(TypeError, match="engine must be 'sim', the name of an installed engine"):
        JITClient(engine=object())
