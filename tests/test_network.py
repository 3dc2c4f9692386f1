"""Nothing listens on the network, and nothing connects to it, when JITClient (async, sync and as
LangChain's ChatOpenAI), jit_slo or ``jitagent bench`` run: every call is served in-process.

Two independent checks: binding, listening or connecting an internet socket raises during the
test (so an attempt fails loudly, wherever it comes from), and afterwards the kernel's socket tables
(``/proc/net/tcp``, ``tcp6``, ``udp``, ``udp6``) show no listening or bound socket of this process
that was not there before the test (an earlier test's library may keep one: Ray's driver does after
``ray.shutdown()``; those are not jitagent's).
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from jitagent.cli import main as jitagent_main
from jitagent.client import JITClient

_INET = (socket.AF_INET, socket.AF_INET6)
_TCP_LISTEN = "0A"


def _own_socket_inodes() -> set[str]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def listening_sockets() -> list[str]:
    """This process's listening TCP sockets and bound UDP sockets, as ``proto local-address``."""
    own = _own_socket_inodes()
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        path = Path(f"/proc/net/{proto}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if inode in own and (state == _TCP_LISTEN if proto.startswith("tcp") else not local.endswith(":0000")):
                found.append(f"{proto} {local}")
    return found


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every bind, listen or connect of an internet socket fail, recording the attempt."""
    attempts: list[str] = []

    def refuse(name: str) -> Any:
        real = getattr(socket.socket, name)

        def guarded(self: socket.socket, *args: Any) -> Any:
            if self.family in _INET:
                attempts.append(f"{name}{args}")
                raise OSError(f"test_network: {name} on an internet socket ({args})")
            return real(self, *args)

        return guarded

    before = set(listening_sockets())
    for name in ("bind", "listen", "connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse(name))
    yield attempts
    assert attempts == []
    assert set(listening_sockets()) <= before


MESSAGES = [{"role": "user", "content": "Plan the next stage."}]


def test_jit_client_serves_in_process(no_network: list[str]) -> None:
    before = set(listening_sockets())
    client = JITClient(policy="jit", time_scale=0.01, max_retries=0)

    async def main() -> None:
        reply = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=4)
        assert reply.choices[0].message.content
        stream = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=4,
                                                      stream=True)
        assert [c async for c in stream]
        assert (await client.models.list()).data
        assert (await client.chat_model(max_tokens=4).ainvoke("hi")).content
        assert set(listening_sockets()) <= before   # also while the engine is running

    try:
        # the synchronous client, with the engine on its background thread
        assert client.sync.chat.completions.create(model=client.served_model, messages=MESSAGES,
                                                   max_tokens=4).choices[0].message.content
        assert client.chat_model(max_tokens=4).invoke("hi").content
        asyncio.run(main())
    finally:
        asyncio.run(client.close())


def test_jit_slo_runs_in_process(no_network: list[str]) -> None:
    pytest.importorskip("langgraph")
    from jitagent_langgraph import jit_slo
    from langgraph.graph import START, MessagesState, StateGraph

    async def main() -> None:
        client = JITClient(policy="jit", time_scale=0.01, max_retries=0)
        llm = client.chat_model(max_tokens=4)

        async def ask(state: MessagesState) -> dict[str, Any]:
            return {"messages": [await llm.ainvoke(state["messages"])]}

        try:
            graph = jit_slo(StateGraph(MessagesState).add_node("ask", ask).add_edge(START, "ask"), deadline_s=10)
            assert (await graph.ainvoke({"messages": [("user", "hi")]}))["messages"][-1].content
            assert graph.last_run is not None and graph.last_run.completed
        finally:
            await client.close()

    asyncio.run(main())


def test_jitagent_bench_runs_in_process(no_network: list[str], tmp_path: Path) -> None:
    code = jitagent_main(["bench", "--workload", "chat", "--policies", "fcfs", "--rate", "1", "--duration", "10",
                          "--out", str(tmp_path)])
    assert code == 0 and (tmp_path / "results.json").exists()


def test_the_checks_see_a_listener() -> None:
    before = set(listening_sockets())
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert f"tcp 0100007F:{port:04X}" in set(listening_sockets()) - before
    finally:
        server.close()
    assert set(listening_sockets()) <= before
