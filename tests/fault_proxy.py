"""A fault-injecting HTTP proxy for tests (aiohttp): forwards to a real server, but answers request
number *n* as the cyclic ``--schedule`` says:

``ok``       forward unchanged;
``429``      answer 429 with ``Retry-After: 1`` (and do not forward);
``500``      answer 500;
``401``      answer 401 (a bad API key: the client must stop, not retry);
``drop``     close the connection without answering;
``stall``    say nothing for ``--stall-s`` seconds, then close (the client's timeout must fire first);
``badjson``  forward, then replace the reply text with prose that is not JSON (OpenAI chat format).

``GET /__proxy/counts`` returns how many requests got each action; ``/__proxy/health`` is 200.
Run: ``python tests/fault_proxy.py --upstream http://127.0.0.1:8000 --port 9000 --schedule 429,ok``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json

from aiohttp import ClientSession, ClientTimeout, web

ACTIONS = {"ok", "401", "429", "500", "drop", "stall", "badjson"}
BAD_REPLY = "Well, I think the hypothesis is probably fine, but it is hard to say for sure."
HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


def build_app(upstream: str, schedule: list[str], stall_s: float) -> web.Application:
    actions = itertools.cycle(schedule)
    counts = dict.fromkeys(schedule, 0)
    session_holder: dict[str, ClientSession] = {}

    async def start(app):
        session_holder["session"] = ClientSession(timeout=ClientTimeout(total=600))

    async def close(app):
        await session_holder["session"].close()

    async def health(request):
        return web.json_response({"ok": True})

    async def report(request):
        return web.json_response(counts)

    async def forward(request: web.Request, body: bytes) -> tuple[int, dict, bytes]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with session_holder["session"].request(
            request.method, upstream + request.path_qs, headers=headers, data=body
        ) as response:
            payload = await response.read()
            out_headers = {k: v for k, v in response.headers.items() if k.lower() not in HOP_HEADERS}
            return response.status, out_headers, payload

    async def proxy(request: web.Request):
        action = next(actions)
        counts[action] += 1
        body = await request.read()
        if action == "429":
            return web.json_response(
                {"error": {"message": "rate limited (injected)", "type": "rate_limit"}},
                status=429,
                headers={"Retry-After": "1"},
            )
        if action == "401":
            return web.json_response({"error": {"message": "invalid api key (injected)"}}, status=401)
        if action == "500":
            return web.json_response({"error": {"message": "internal error (injected)"}}, status=500)
        if action == "drop":
            request.transport.abort()
            raise asyncio.CancelledError
        if action == "stall":
            await asyncio.sleep(stall_s)
            request.transport.abort()
            raise asyncio.CancelledError
        status, headers, payload = await forward(request, body)
        if action == "badjson" and status == 200:
            reply = json.loads(payload)
            for choice in reply.get("choices", []):
                choice["message"]["content"] = BAD_REPLY
            payload = json.dumps(reply).encode()
        return web.Response(status=status, body=payload, headers=headers)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.on_startup.append(start)
    app.on_cleanup.append(close)
    app.router.add_get("/__proxy/health", health)
    app.router.add_get("/__proxy/counts", report)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--schedule", default="ok")
    parser.add_argument("--stall-s", type=float, default=30.0)
    args = parser.parse_args()
    schedule = [part.strip() for part in args.schedule.split(",") if part.strip()]
    unknown = set(schedule) - ACTIONS
    if unknown or not schedule:
        parser.error(f"unknown actions {sorted(unknown)}; choose from {sorted(ACTIONS)}")
    web.run_app(
        build_app(args.upstream.rstrip("/"), schedule, args.stall_s), host="127.0.0.1", port=args.port, print=None
    )


if __name__ == "__main__":
    main()
