"""LitServe peer for ``serve_peers.py``: the cnnkit model behind LitServe's documented ``LitAPI`` path.

    .venv/bin/python benchmarks/peers/litserve_app.py MODEL.keras --port 8000

``POST /predict`` takes a multipart upload with field ``file`` (LitServe's documented file input: the
server parses the form and hands it to ``decode_request``) and answers ``{"label": ..., "probability": ...}``;
``GET /health`` answers 200 once every inference worker has loaded the model. Listens on 127.0.0.1 only.

Settings as LitServe's own docs give them for a CPU: ``accelerator="cpu"``, ``workers_per_device`` = the
number of cores ("For CPU, set to the number of cores available"), ``fast_queue=True`` (ZeroMQ, "for
>100 RPS"); ``num_api_servers`` left at its default (as many HTTP processes as inference workers); no
batching (``max_batch_size`` 1, the default). ``--workers`` and ``--no-fast-queue`` change them.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import litserve as ls
from peer_model import PeerModel


class ImageClassifierAPI(ls.LitAPI):
    """One PNG upload in, the best label out."""

    def __init__(self, model_path: str) -> None:
        super().__init__()
        self.model_path = model_path

    def setup(self, device: str) -> None:
        self.model = PeerModel(self.model_path)

    # No annotation on ``request``: LitServe reads it to choose the parser, and none means "the
    # Starlette request", which it turns into form data (multipart) or JSON before calling this.
    def decode_request(self, request) -> bytes:  # type: ignore[no-untyped-def]
        return request["file"].file.read()

    def predict(self, data: bytes) -> tuple[str, float]:
        return self.model.classify(data)

    def encode_response(self, output: tuple[str, float]) -> dict[str, Any]:
        label, probability = output
        return {"label": label, "probability": probability}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="cnnkit .keras file")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="inference workers (default: the number of cores, as LitServe's docs advise on CPU)")
    parser.add_argument("--no-fast-queue", dest="fast_queue", action="store_false",
                        help="multiprocessing queues instead of ZeroMQ")
    args = parser.parse_args()
    server = ls.LitServer(ImageClassifierAPI(args.model), accelerator="cpu", workers_per_device=args.workers,
                          fast_queue=args.fast_queue)
    server.run(host="127.0.0.1", port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
