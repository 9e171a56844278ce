"""From a request's bytes to a ``(N, H, W, C)`` uint8 batch, or a 4xx that says why not.

Two ways in here: a multipart upload (field ``file``, repeatable) and a raw image body
(``Content-Type: image/*``); the Open Inference Protocol's tensors are :mod:`cnnkit.server.oip`'s. The body limit is
checked twice: against ``Content-Length`` before reading anything, and while
counting the bytes that actually arrive (a chunked or lying client). Image
decoding goes through the one shared :func:`cnnkit.images.decode_image`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import numpy as np
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from cnnkit.errors import DataError
from cnnkit.predictor import Predictor
from cnnkit.server.errors import ApiError

FIELD = "file"


def media_type(request: Request) -> str:
    """The request's media type without parameters, lower-case (``""`` when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _too_large(limit: int, received: str) -> ApiError:
    return ApiError(413, f"Request body too large: the limit is {limit:,} bytes ({limit / 2**20:.3g} MiB). "
                         f"Received: {received}. Send fewer or smaller images per request, "
                         "or start the server with a larger --max-body-mb.")


async def limited_stream(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The body's chunks; raises 413 as soon as more than ``limit`` bytes are announced or arrive."""
    announced = request.headers.get("content-length")
    if announced is not None and announced.isdigit() and int(announced) > limit:
        raise _too_large(limit, f"Content-Length: {int(announced):,} bytes")
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise _too_large(limit, f"more than {limit:,} bytes in the body"
                                        + (f" (Content-Length said {announced})" if announced else ""))
            yield chunk
    except ClientDisconnect:
        raise ApiError(400, "The client disconnected before sending the whole body. Received: "
                            f"{total:,} bytes. Retry the request.") from None


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (else 413)."""
    return b"".join([chunk async for chunk in limited_stream(request, limit)])


async def read_uploads(request: Request, limit: int, max_files: int) -> list[tuple[str, bytes]]:
    """``(filename, bytes)`` of every multipart file in field ``file``, in order."""
    parser = MultiPartParser(request.headers, limited_stream(request, limit),
                             max_files=max_files, max_fields=100, max_part_size=limit)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(422, f"Malformed multipart body: {exc.message} Received: Content-Type "
                            f"{request.headers.get('content-type')!r}. Send images as multipart/form-data "
                            f"with field name {FIELD!r} (at most {max_files} files), e.g. "
                            f"curl -F {FIELD}=@digit.png ...") from None
    try:
        uploads = [v for k, v in form.multi_items() if k == FIELD and isinstance(v, UploadFile)]
        if not uploads:
            fields = sorted({k for k, _ in form.multi_items()})
            raise ApiError(422, f"No image in field {FIELD!r}. Received fields: {fields}. "
                                f"Send each image as a file part named {FIELD!r}, e.g. curl -F {FIELD}=@digit.png ...")
        return [(u.filename or f"{FIELD}[{i}]", await u.read()) for i, u in enumerate(uploads)]
    finally:
        await form.close()


def decode_for(predictor: Predictor, data: bytes, name: str, max_pixels: int | None = None) -> np.ndarray:
    """Decode one uploaded image to the model's input shape (runs in a worker thread)."""
    try:
        return predictor.decode(data, max_pixels=max_pixels)
    except DataError as exc:
        raise ApiError(422, f"{name}: {exc}") from None


def check_batch(predictor: Predictor, pixels: np.ndarray) -> np.ndarray:
    """Validate pixels against the model's input shape; a mismatch is the client's (422)."""
    try:
        return predictor.check_pixels(pixels)
    except DataError as exc:
        raise ApiError(422, str(exc)) from None
