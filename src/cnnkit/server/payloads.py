"""From a request's bytes to a ``(N, H, W, C)`` uint8 batch, or a 4xx that says why not.

Three ways in: a multipart upload (field ``file``, repeatable), a raw image body
(``Content-Type: image/*``), and a KServe V2 JSON tensor. The body limit is
checked twice: against ``Content-Length`` before reading anything, and while
counting the bytes that actually arrive (a chunked or lying client). Image
decoding goes through the one shared :func:`cnnkit.images.decode_image`.
"""

from __future__ import annotations

import json
import math
from typing import Any, AsyncIterator

import numpy as np
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from cnnkit.errors import DataError
from cnnkit.predictor import Predictor
from cnnkit.server.errors import ApiError

FIELD = "file"
V2_INPUT = "pixels"
V2_EXAMPLE = '{"inputs": [{"name": "pixels", "shape": [N, H, W, C], "datatype": "UINT8", "data": [...]}]}'


def media_type(request: Request) -> str:
    """The request's media type without parameters, lower-case (``""`` when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _too_large(limit: int, received: str) -> ApiError:
    return ApiError(413, f"Request body too large: the limit is {limit:,} bytes ({limit / 2**20:.3g} MiB). "
                         f"Received: {received}. Send fewer or smaller images per request, "
                         "or start the server with a larger --max-body-mb.")


async def limited_stream(request: Request, limit: int) -> AsyncIterator[bytes]:
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
    parser = MultiPartParser(request.headers, limited_stream(request, limit),  # type: ignore[arg-type]
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


def parse_v2(body: bytes, input_shape: tuple[int, ...]) -> tuple[np.ndarray, str | None]:
    """Parse a KServe V2 inference request holding one UINT8 tensor ``[N, *input_shape]``.

    Returns the pixels and the request's ``id`` (echoed in the response, as KServe does).
    """
    expected = [None, *input_shape]
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _v2_error(f"Request body is not valid JSON ({exc}). Received: {len(body):,} bytes.") from None
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise _v2_error(f"Expected an object with \"inputs\": a list of exactly one tensor. "
                        f"Received: {_preview(inputs if isinstance(doc, dict) else doc)}.")
    tensor: dict[str, Any] = inputs[0]
    if tensor.get("name") != V2_INPUT:
        raise _v2_error(f"Expected the input tensor to be named {V2_INPUT!r}. "
                        f"Received: name={_preview(tensor.get('name'))}.")
    if tensor.get("datatype") != "UINT8":
        raise _v2_error("Expected datatype \"UINT8\" (raw pixels 0-255; the model scales them itself). "
                        f"Received: datatype={_preview(tensor.get('datatype'))}.")
    shape = tensor.get("shape")
    if (not isinstance(shape, list) or len(shape) != len(expected)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in shape)
            or shape[0] < 1 or list(shape[1:]) != list(input_shape)):
        raise _v2_error(f"Expected shape [N, {', '.join(map(str, input_shape))}] with N >= 1. "
                        f"Received: shape={_preview(shape)}.")
    data = tensor.get("data")
    try:
        array = np.asarray(data)
    except (ValueError, OverflowError, TypeError):
        array = np.asarray([], dtype=object)  # ragged nesting: reported as not integers below
    if not isinstance(data, list) or array.dtype.kind not in "iu" or array.dtype == object:
        raise _v2_error(f"Expected \"data\": a flat or nested list of integers 0-255. "
                        f"Received: {_preview(data)}.")
    if array.size != math.prod(shape):
        raise _v2_error(f"\"data\" holds {array.size:,} values but shape {shape} needs {math.prod(shape):,}.")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise _v2_error(f"Expected UINT8 values 0-255. Received: values from {array.min()} to {array.max()}.")
    request_id = doc.get("id")
    return array.astype(np.uint8).reshape(shape), request_id if isinstance(request_id, str) else None


def _v2_error(what: str) -> ApiError:
    return ApiError(422, f"{what} Send a KServe V2 request: {V2_EXAMPLE}")


def _preview(value: Any, limit: int = 80) -> str:
    if isinstance(value, list) and len(value) > 8:  # never serialise a 10 MB list just to quote it
        return f"{json.dumps(value[:3])[:limit - 1]}...] (a list of {len(value):,} items)"
    text = json.dumps(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({type(value).__name__})"
