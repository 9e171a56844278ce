"""The naive server `serve_load.py` compares against: one request, one `model.predict`.

What a tutorial's "deploy your model" step looks like: a Starlette route that decodes the uploaded
PNG and calls `model.predict(x[None])`. No batching, no compiled call; `model.predict` runs in
Starlette's thread pool so the event loop stays free (the fair version of the naive server).

    .venv/bin/python benchmarks/naive_server.py RUN_OR_MODEL --port 8001

POST /predict takes a raw image body and answers {"label": ..., "probabilities": [...]};
GET /livez answers once the model is loaded. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cnnkit.artifact import load_model
from cnnkit.images import decode_image

from common import given_path  # benchmarks/common.py


def create_naive_app(model_path: str) -> Starlette:
    model, metadata = load_model(model_path)
    height, width, _ = metadata.input_shape

    async def predict(request: Request) -> JSONResponse:
        x = decode_image(await request.body(), size=(height, width), color_mode=metadata.color_mode)
        # verbose=0: the default progress bar would print a line per request (slower still).
        probs = (await run_in_threadpool(model.predict, x[None], verbose=0))[0]
        return JSONResponse({"label": metadata.class_names[int(np.argmax(probs))],
                             "probabilities": probs.astype(float).tolist()})

    async def livez(request: Request) -> JSONResponse:
        return JSONResponse({"status": "alive"})

    return Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/livez", livez)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=given_path, help="run folder or .keras file")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    uvicorn.run(create_naive_app(str(args.model)), host="127.0.0.1", port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
