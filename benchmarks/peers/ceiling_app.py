"""The ceiling for ``serve_peers.py``: cnnkit's HTTP stack answering a constant, with no decoding or model.

    .venv/bin/python benchmarks/peers/ceiling_app.py --label 7 --port 8000

The same Starlette app class and uvicorn settings as ``cnnkit serve`` (one process, uvicorn's defaults:
uvloop and httptools where installed, no Server header) without cnnkit's metrics middleware. ``POST
/v1/predict`` reads the whole body, as cnnkit does, then answers a prerendered JSON naming ``--label``;
``GET /readyz`` answers 200. Whatever cnnkit does per request on top of this is what it costs over the
ceiling. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def create_ceiling_app(label: str) -> Starlette:
    """The app: a constant prediction for every POST /v1/predict."""
    answer = json.dumps({"predictions": [{"label": label, "probability": 1.0}]}).encode()

    async def predict(request: Request) -> Response:
        await request.body()
        return Response(answer, media_type="application/json")

    async def readyz(request: Request) -> Response:
        return Response(b'{"status":"ready"}', media_type="application/json")

    return Starlette(routes=[Route("/v1/predict", predict, methods=["POST"]), Route("/readyz", readyz)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="the label every answer names")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(create_ceiling_app(args.label), host="127.0.0.1", port=args.port, log_level="warning",
                lifespan="on", server_header=False)


if __name__ == "__main__":
    main()
