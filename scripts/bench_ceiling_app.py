"""The HTTP ceiling for scripts/bench_ingest: a bare ASGI app that answers 202 to everything.

It reads the whole request body (as Footfall's ingest handlers do) and answers an empty 202,
so wrk against it measures what granian, the loopback and the client cost on their own.

``python scripts/bench_ceiling_app.py --port P`` serves it with the same granian settings as
``footfall serve`` (appliance/cli.py, ``cmd_serve``): ASGI interface, one worker, access log
off, backlog 2048, everything else (loop, threads, HTTP mode) at granian's defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

_HEADERS = [(b"content-type", b"application/json")]


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 202, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": b""})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    here = str(Path(__file__).resolve().parent)
    # granian's worker imports the target by name: make this folder importable there too
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, here)
    from granian import Granian
    from granian.constants import Interfaces

    Granian(
        "bench_ceiling_app:app",
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=1,
        log_access=False,
        backlog=2048,
    ).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
