"""Every private API of another library that jitagent relies on still exists.

Each integration keeps the private names it uses in one ``_compat`` module, listed in its
``PRIVATE_APIS``; this test imports each one, so that an upgrade that removes or moves one fails
here, naming it, rather than somewhere inside a call.
"""

from __future__ import annotations

import importlib

import pytest

COMPAT_MODULES = [
    "jitagent.client._compat",
    "jitagent.telemetry._compat",
    "jitagent_langgraph._compat",
    "jitagent_vllm._compat",
]


def resolve(symbol: str) -> object:
    """The object ``"module:attribute.path"`` names; AssertionError naming it when it is gone."""
    module_name, _, path = symbol.partition(":")
    try:
        target: object = importlib.import_module(module_name)
        for part in path.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise AssertionError(f"private API {symbol} is gone ({exc}): update the _compat module that lists it") from None
    return target


@pytest.mark.parametrize("module", COMPAT_MODULES)
def test_every_private_api_is_there(module: str) -> None:
    compat = importlib.import_module(module)   # imports the private names themselves
    assert compat.PRIVATE_APIS, f"{module} lists no private API"
    for symbol in compat.PRIVATE_APIS:
        assert resolve(symbol) is not None


@pytest.mark.parametrize("symbol", ["opentelemetry.metrics._internal:_NoSuchProvider",
                                    "openai._base_client:BaseClient._no_such_hook",
                                    "langgraph._no_such_module:RunnableCallable"])
def test_a_missing_private_api_is_named(symbol: str) -> None:
    with pytest.raises(AssertionError, match=symbol.replace(".", r"\.")):
        resolve(symbol)
