"""Generation-engine overhead on the CPU: how close the async engine gets to concurrency / latency.

A local OpenAI-compatible server answers every chat completion after a fixed delay (500 ms) with
a valid CoT answer. The engine (retries, rate limiter, JSON extraction, append-only fsynced store)
sends N requests with concurrency C through the real OpenAI-compatible backend. The ideal rate is
C / latency; the engine's overhead is what it loses against that.

    python bench/generation_engine.py --requests 1280 --concurrency 64 --latency 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ANSWER = json.dumps(
    {
        "thought_process": "1. The premise says a man plays. 2. The hypothesis says a person "
        "plays. 3. A man is a person, so it follows.",
        "predicted_label": 1,
    }
)


def make_app(latency_s: float):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def chat(request):
        body = await request.json()
        await asyncio.sleep(latency_s)
        return JSONResponse(
            {
                "id": "bench",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": ANSWER}}
                ],
                "usage": {"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160},
            }
        )

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def serve(port: int, latency_s: float) -> None:
    import uvicorn

    uvicorn.run(make_app(latency_s), host="127.0.0.1", port=port, log_level="warning", backlog=4096)


def start_server(latency_s: float) -> tuple[str, subprocess.Popen]:
    """The server runs in its own process, so it does not share the engine's interpreter lock."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--latency", str(latency_s)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return f"http://127.0.0.1:{port}/v1", process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the benchmark server did not start")


async def drive(base_url: str, requests: int, concurrency: int, store_path: Path) -> dict:
    from nli_cot_hub.backends import OpenAICompatibleBackend
    from nli_cot_hub.engine import Engine, EngineConfig, run_jobs
    from nli_cot_hub.records import CoTRecord
    from nli_cot_hub.store import RecordStore

    backend = OpenAICompatibleBackend(base_url, "bench-model", api_key="unused", json_mode="none")
    engine = Engine(backend, EngineConfig(concurrency=concurrency, max_tokens=64))
    store = RecordStore(store_path)
    messages = [{"role": "user", "content": "Premise: A man plays a guitar.\nHypothesis: A person plays."}]

    async def handle(index: int) -> CoTRecord:
        answer = await engine.ask(messages)
        return CoTRecord(
            id=str(index),
            premise="A man plays a guitar.",
            hypothesis="A person plays.",
            label=1,
            thought_process=answer.extraction.thought,
            predicted_label=answer.extraction.label,
            model=backend.model,
            status=answer.status,
        )

    def on_error(index: int, error: BaseException) -> CoTRecord:
        return CoTRecord(id=str(index), premise="-", hypothesis="-", status="failed", error=str(error))

    await engine.ask(messages)  # imports, client and connection set-up stay out of the timing
    cpu_before = time.process_time()
    started = time.perf_counter()
    report = await run_jobs(range(requests), handle, on_error, store, engine, desc="requests")
    seconds = time.perf_counter() - started
    cpu_ms = (time.process_time() - cpu_before) * 1000 / requests
    await backend.aclose()
    # CPU time per request does not depend on what else loads the machine: 1000 / cpu_ms is the
    # rate one core could sustain, the engine's ceiling whatever the server's latency.
    return {
        "seconds": round(seconds, 2),
        "written": report.written,
        "failed": report.failed,
        "engine_cpu_ms_per_request": round(cpu_ms, 2),
        "one_core_ceiling_requests_per_s": round(1000 / cpu_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1280)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--out", default="bench/results/generation_engine_cpu.json")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # internal: run only the server
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.latency)
        return
    base_url, server = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            result = asyncio.run(drive(base_url, args.requests, args.concurrency, Path(scratch) / "store.jsonl"))
    finally:
        server.terminate()
    ideal = args.concurrency / args.latency
    achieved = result["written"] / result["seconds"]
    summary = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "ideal_requests_per_s": ideal,
        "requests_per_s": round(achieved, 1),
        "fraction_of_ideal": round(achieved / ideal, 3),
        **result,
        "machine": "2-core CPU (development machine); server in a second process",
        "load_average_1min": os.getloadavg()[0],
    }
    Path(args.out).write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
