"""What the OpenAI-compatible handlers need from an engine: a backend.

A backend knows its model's name and context length, counts prompt tokens, says what it cannot
do, and turns a validated request into a generation, an async iterator of text pieces (one per
output token): the message's content, or, when the generation's ``tool_calls`` lists calls, their
arguments one after another. Asked to observe it (``generate(request, observe=True)``, which telemetry does),
the generation also tells what the engine saw of the request as a
:class:`~jitagent.telemetry.stats.GenerationStats` (defined with telemetry, which reads it; every
backend fills in the same record).
:class:`SimBackend` serves from a :class:`~jitagent.engines.sim.SimEngine`, making text with
:mod:`jitagent.client.text`, and tool calls and JSON answers with
:mod:`jitagent.client.simulated_turn` (how often it calls tools: :class:`SimToolSettings`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from jitagent.client.answer_format import AnswerFormat
from jitagent.client.simulated_turn import SimToolSettings, ToolCallPlan, simulated_turn
from jitagent.engines.sim import RequestLog, SimEngine
from jitagent.scheduling.request import PipelineContext
from jitagent.slo import SLO
from jitagent.telemetry.stats import GenerationStats

__all__ = ["Backend", "Generation", "GenerationRequest", "GenerationStats", "SimGeneration", "SimBackend",
           "SimToolSettings", "ToolCallPlan"]


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A validated request, as the engine will see it."""

    request_id: str
    prompt_tokens: int
    prompt_key: bytes      # what identifies the prompt (seeds the simulated answer when no seed is given)
    max_tokens: int
    seed: int | None
    slo: SLO | None
    pipeline: PipelineContext | None
    request_class: str
    prompt_ids: tuple[int, ...] | None = None   # the prompt's token ids, from a backend that tokenizes
    temperature: float | None = None
    answer_format: AnswerFormat | None = None   # tools, JSON: what the answer may be (None: text)
    tool_rounds: int = 0                        # earlier assistant turns of the conversation that called tools


class Generation(Protocol):
    """One request's answer as it is made: text pieces, one per engine output."""

    completion_tokens: int   # tokens delivered so far
    tool_calls: tuple[ToolCallPlan, ...]   # the calls the pieces are the arguments of (empty: content)

    def __aiter__(self) -> AsyncIterator[str]: ...

    async def __anext__(self) -> str: ...

    @property
    def finish_reason(self) -> str:
        """``"stop"`` or ``"length"``, once the iteration has ended."""
        ...

    def stats(self) -> GenerationStats | None: ...

    async def aclose(self) -> None:
        """End the request now (aborting it in the engine if it is still running)."""
        ...


class Backend(Protocol):
    """An engine as the OpenAI-compatible handlers see it."""

    description: str
    supports_logprobs: bool
    model: str

    @property
    def max_model_len(self) -> int: ...

    def tokenize(self, prompt: Any, chat: bool) -> list[int] | None:
        """The prompt's token ids (``prompt`` is the validated messages, text or ids), or ``None`` for a
        backend that counts tokens approximately."""
        ...

    def validate(self, prompt_tokens: int, max_tokens: int) -> None: ...

    def generate(self, request: GenerationRequest, observe: bool = False) -> Generation:
        """Start ``request``; :class:`~jitagent.client.answer_format.FormatError` (naming the field)
        for an answer it cannot make."""
        ...


class SimGeneration:
    """The text pieces of one simulated request, as the engine delivers its tokens.

    ``completion_tokens`` counts the tokens delivered so far; ``finish_reason`` is meaningful once
    the iterator is exhausted; ``tool_calls``: the calls whose arguments the pieces are. :meth:`aclose`
    aborts the request in the engine.
    """

    __slots__ = ("_tokens", "_pieces", "_natural_length", "_max_tokens", "_log", "_policy", "completion_tokens",
                 "tool_calls")

    def __init__(self, tokens: AsyncIterator[int], pieces: tuple[str, ...], natural_length: int,
                 max_tokens: int, log: RequestLog | None = None, policy: str | None = None,
                 tool_calls: tuple[ToolCallPlan, ...] = ()) -> None:
        self._tokens = tokens
        self._pieces = pieces
        self._natural_length = natural_length
        self._max_tokens = max_tokens
        self._log = log
        self._policy = policy
        self.completion_tokens = 0
        self.tool_calls = tool_calls

    def __aiter__(self) -> SimGeneration:
        return self

    async def __anext__(self) -> str:
        index = await self._tokens.__anext__()
        self.completion_tokens = index
        return self._pieces[index - 1]

    @property
    def finish_reason(self) -> str:
        """``"length"`` when ``max_tokens`` cut the answer short, else ``"stop"`` (the model's own end)."""
        return "length" if self._natural_length > self._max_tokens else "stop"

    def stats(self) -> GenerationStats | None:
        """What the engine saw of the request so far; ``None`` unless it was generated with
        ``observe=True`` and the engine has taken it."""
        log = self._log
        req = log.request if log is not None else None
        if log is None or req is None:
            return None
        return GenerationStats(req.arrival, req.first_scheduled, tuple(req.token_times), req.num_preemptions,
                               tuple(log.preempted_at), log.sat_out_s, log.estimated_output_tokens, self._policy)

    async def aclose(self) -> None:
        await self._tokens.aclose()  # type: ignore[attr-defined]


class SimBackend:
    """Serves requests from a :class:`SimEngine`; its model calls tools as ``tools`` says (the
    defaults of :class:`SimToolSettings` if ``None``) and answers JSON when asked; it returns no logprobs."""

    description = "the simulated engine"
    supports_logprobs = False

    def __init__(self, engine: SimEngine, model: str, tools: SimToolSettings | None = None) -> None:
        self.engine = engine
        self.model = model
        self.tools = tools or SimToolSettings()

    @property
    def max_model_len(self) -> int:
        return self.engine.max_model_len

    def tokenize(self, prompt: Any, chat: bool) -> None:
        """The simulated model counts prompt tokens approximately (:mod:`jitagent.client.text`)."""
        return None

    def validate(self, prompt_tokens: int, max_tokens: int) -> None:
        """ValueError naming the problem unless the engine can ever serve a request this size."""
        self.engine.validate(prompt_tokens, max_tokens)

    def generate(self, request: GenerationRequest, observe: bool = False) -> SimGeneration:
        """Start ``request``: the engine admits it on the first ``__anext__``. With ``observe``
        the generation keeps what the engine saw of it (:meth:`SimGeneration.stats`).
        :class:`~jitagent.client.answer_format.FormatError` if no instance of a schema turned up."""
        answer, calls = simulated_turn(request.prompt_key, request.seed, request.max_tokens, request.answer_format,
                                       request.tool_rounds, self.tools)
        log = RequestLog() if observe else None
        tokens = self.engine.generate(request.prompt_tokens, request.max_tokens, answer.length, slo=request.slo,
                                      request_class=request.request_class, pipeline=request.pipeline,
                                      request_id=request.request_id, log=log)
        return SimGeneration(tokens, answer.pieces, answer.length, request.max_tokens, log,
                             self.engine.policy_name if observe else None, calls)
