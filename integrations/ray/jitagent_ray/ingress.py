"""The app's OpenAI-compatible HTTP ingress: ``/v1/chat/completions``, ``/v1/completions``,
``/v1/models``, streaming included, served through :class:`~jitagent_ray.server.ReplicasServer`.

The caller's W3C trace context (``traceparent``) travels on to the replica, so the replica's call
span is a child of the caller's.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from opentelemetry import propagate
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from jitagent.client.handlers import APIErrorReply, JSONReply
from jitagent.client.transport import StreamedReply
from jitagent_ray.server import ReplicasServer

__all__ = ["OpenAIIngress", "API_ROOT"]

API_ROOT = "/v1"


class OpenAIIngress:
    """The body of the ingress deployment (see :func:`jitagent_ray.app.build_app`)."""

    def __init__(self, replicas: DeploymentHandle) -> None:
        self._server = ReplicasServer(replicas)

    async def __call__(self, request: Request) -> Response:
        path = request.url.path
        if not path.startswith(API_ROOT + "/"):
            return _reply(APIErrorReply(404, f"{request.method} {path} is not served: the API is under {API_ROOT}/",
                                        code="unknown_url").reply())
        body = await request.body()
        reply = await self._server.handle(request.method, path.removeprefix(API_ROOT), body, None,
                                          propagate.extract(request.headers))
        if isinstance(reply, JSONReply):
            return _reply(reply)
        return StreamingResponse(_events(reply), headers=reply.headers)


async def _events(reply: StreamedReply) -> AsyncGenerator[bytes, None]:
    """The reply's events; however the stream ends (the caller gone too), the replica's call is closed."""
    try:
        async for event in reply.events:
            yield event
    finally:
        await reply.aclose()


def _reply(reply: JSONReply) -> Response:
    return Response(reply.body, status_code=reply.status, headers=reply.headers)
