"""The parts of LangGraph that jitagent_langgraph reaches and LangGraph does not publish as API, in
one place: a LangGraph release that moves or renames one of them breaks this module (and its test)
only.

* ``langgraph._internal._runnable.RunnableCallable``: the runnable LangGraph itself makes of a node
  function. A wrapped node must be one (not a plain ``RunnableLambda``) so that LangGraph treats it
  as it treats the node it wraps: given the node's ``config``, not traced a second time, and its
  subgraphs still found, since LangGraph looks for them among the nonlocals of the node's
  functions (hence :func:`~jitagent_langgraph.wrap.wrap_node`'s closures).
"""

from __future__ import annotations

from langgraph._internal._runnable import RunnableCallable

__all__ = ["RunnableCallable", "PRIVATE_APIS"]

# Every private name used, as "module:attribute.path", for the test that imports each.
PRIVATE_APIS = ("langgraph._internal._runnable:RunnableCallable",)
