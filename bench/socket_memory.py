"""What an idle WebSocket costs the ASGI server itself, before and after one frame each way.

    .venv/bin/python bench/socket_memory.py [--sockets 1000] [--servers daphne,uvicorn]

``bench/fanout.py`` compares taskstore's RSS per idle subscribed socket with its floor's, whose
sockets never exchange a frame; taskstore's sockets send a ``subscribe`` frame and read the
answer. This bench separates the server's share of that difference: for each server it opens
``--sockets`` sockets to two bare ASGI applications of this module (no Channels, no Django),

  silent    accepts and reads, as the floor's sockets are used;
  exchange  answers each client frame with one 480-byte frame; every socket sends one and
            reads the answer, as a subscribing socket does;

and prints the server's RSS per socket once it settles, with the difference. What the exchange
adds is the server's own (its connection's buffers after one frame each way), not the
application's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# The servers import this module for its applications: what the orchestrating process needs
# (bench.fanout's server control, the websockets client) is imported where it is used, so the
# servers load nothing but the applications.

# The size of a task.update frame (bench/fanout.py pads the floor's messages to it too).
FRAME = "x" * 480
OPEN_CONCURRENCY = 100


async def silent(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept the socket and read until it closes."""
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


async def exchange(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept the socket and answer each frame the client sends with one frame."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        await send({"type": "websocket.send", "text": FRAME})


async def per_socket(server: str, app: str, sockets: int) -> float:
    """The server's RSS per idle socket of ``app``, KiB."""
    from websockets.asyncio.client import connect

    from bench.fanout import start_server, wait_settled

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    served = start_server(server, f"bench.socket_memory:{app}", env)
    try:

        async def open_one() -> Any:
            ws = await connect(
                f"ws://127.0.0.1:{served.port}/", proxy=None, ping_interval=None, open_timeout=60
            )
            if app == "exchange":
                await ws.send('{"type": "subscribe"}')
                await asyncio.wait_for(ws.recv(), 60)
            return ws

        warm = await open_one()  # the server's code paths, before the baseline
        await warm.close()
        base = await wait_settled(served)
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)

        async def gated() -> Any:
            async with gate:
                return await open_one()

        opened = await asyncio.gather(*(gated() for _ in range(sockets)))
        after = await wait_settled(served)
        await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)
        return (after - base) / sockets / 1024
    finally:
        served.stop()


async def run(servers: list[str], sockets: int) -> None:
    rows = []
    for server in servers:
        quiet = await per_socket(server, "silent", sockets)
        talked = await per_socket(server, "exchange", sockets)
        rows.append((server, quiet, talked))
    print(f"\n{sockets} idle sockets per server, RSS per socket once settled:\n")
    print("| server | silent KiB | after one frame each way KiB | the exchange adds KiB |")
    print("|---|---:|---:|---:|")
    for server, quiet, talked in rows:
        print(f"| {server} | {quiet:.1f} | {talked:.1f} | {talked - quiet:+.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=1000, help="sockets per server and application")
    parser.add_argument("--servers", default="daphne,uvicorn", help="servers: daphne, uvicorn")
    args = parser.parse_args()
    servers = [s for s in args.servers.split(",") if s]
    if not set(servers) <= {"daphne", "uvicorn"}:
        parser.error("--servers takes daphne and/or uvicorn")
    asyncio.run(run(servers, args.sockets))


if __name__ == "__main__":
    main()
