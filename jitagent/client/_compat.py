"""The private parts of other code that the client reaches, in one place: a release that moves or
renames one of them breaks this module (and its test) only.

* ``openai._base_client.BaseClient._process_response_data(*, data, cast_to, response)``: where the
  client turns each decoded JSON body (each streamed chunk) into its typed object, leniently and
  slowly; :class:`FastResponseData` lets a client build the objects it knows the fast way and hands
  everything else back to it.
* ``re._parser.parse`` and the opcodes of ``re._constants``: the standard library's own parse tree of
  a regular expression, from which the simulated model builds strings that match a JSON Schema
  ``pattern`` (:mod:`jitagent.client.regex_sample`): the grammar ``re.compile`` itself uses.
"""

from __future__ import annotations

import re._constants as sre_constants
import re._parser as sre_parse
from typing import Any, TypeVar

import httpx2
from openai._base_client import BaseClient

__all__ = ["FastResponseData", "PRIVATE_APIS", "sre_constants", "sre_parse"]

# Every private name used, as "module:attribute.path", for the test that imports each.
PRIVATE_APIS = ("openai._base_client:BaseClient._process_response_data", "re._parser:parse",
                "re._constants:MAXREPEAT", "re._constants:CATEGORY_DIGIT")

_R = TypeVar("_R")
# Checked at import, so that a release without it fails here, naming it, not at the first call.
_HOOK = BaseClient._process_response_data


class FastResponseData:
    """A mixin for an OpenAI client class: :meth:`_fast_response` builds a response object first."""

    def _fast_response(self, data: object, cast_to: type[Any]) -> Any | None:
        """The typed object for ``data``, or ``None`` to let the OpenAI client build it."""
        return None

    def _process_response_data(self, *, data: object, cast_to: type[_R], response: httpx2.Response) -> _R:
        if (built := self._fast_response(data, cast_to)) is not None:
            return built  # type: ignore[no-any-return]
        return super()._process_response_data(data=data, cast_to=cast_to, response=response)  # type: ignore[misc]
