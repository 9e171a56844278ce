"""The Open Inference Protocol (KServe V2) on the wire, for one image classifier: requests in, answers out.

A request carries exactly one of the model's two inputs (both are listed by ``GET /v2/models/{name}``):

- ``pixels``, ``UINT8`` ``[N, H, W, C]``: raw pixels at the model's input size;
- ``images``, ``BYTES`` ``[N]``: encoded image files (PNG, JPEG, ...), each decoded by the shared
  decoder (:func:`cnnkit.images.decode_image`) as every other way in does. In JSON an element is the
  file as base64 text; as binary data, each element is preceded by its length (4 bytes, little-endian).

The answer holds the outputs asked for (all of them when ``outputs`` is absent):

- ``probabilities``, ``FP32`` ``[N, K]``; with the output parameter ``classification: k``, ``BYTES``
  ``[N, k]`` of ``"score:index:label"``, best first (Triton's classification extension);
- ``label``, ``BYTES`` ``[N]``: the most probable class name.

**Binary tensor data.** With the header ``Inference-Header-Content-Length: L`` the body is L bytes of
JSON and then each binary input's bytes, in order, as many as its ``binary_data_size`` parameter says.
An output comes back binary when its ``binary_data`` parameter, or else the request's
``binary_data_output`` parameter, is true: its ``binary_data_size`` then says how many bytes of the
answer's tail are its, and the answer's ``Inference-Header-Content-Length`` how many are JSON.

Every check here says what was wrong and what was received; lengths are compared with what
arrived before anything is allocated, so a lying header or a huge declared shape costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnkit.server.errors import ApiError

PIXELS, IMAGES = "pixels", "images"
PROBABILITIES, LABEL = "probabilities", "label"
OUTPUTS = (PROBABILITIES, LABEL)
HEADER_LENGTH = "inference-header-content-length"
EXTENSIONS = ["binary_tensor_data", "classification"]
EXAMPLE = ('{"inputs": [{"name": "pixels", "shape": [N, H, W, C], "datatype": "UINT8", "data": [...]}]} or '
           '{"inputs": [{"name": "images", "shape": [N], "datatype": "BYTES", "data": ["<base64 of a PNG>"]}]}')


@dataclass(frozen=True)
class Output:
    """One output the client asked for, and how it wants it."""

    name: str
    binary: bool = False
    classification: int = 0  # > 0: the top k as "score:index:label" instead of the probabilities


@dataclass(frozen=True)
class InferRequest:
    """A parsed inference request: pixels or encoded images (one of them), and the outputs to answer."""

    pixels: np.ndarray | None
    images: list[bytes] | None
    outputs: tuple[Output, ...]
    id: str | None = None


def model_metadata(name: str, version: str, platform: str, input_shape: tuple[int, ...],
                   num_classes: int) -> dict[str, Any]:
    """``GET /v2/models/{name}``: the inputs and outputs, ``-1`` marking the batch dimension."""
    return {"name": name, "versions": [version], "platform": platform,
            "inputs": [{"name": PIXELS, "datatype": "UINT8", "shape": [-1, *input_shape]},
                       {"name": IMAGES, "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, num_classes]},
                        {"name": LABEL, "datatype": "BYTES", "shape": [-1]}]}


def parse_request(body: bytes, header_length: str | None, input_shape: tuple[int, ...]) -> InferRequest:
    """Parse an inference request's body (and its ``Inference-Header-Content-Length``, if any)."""
    text, binary = _split(body, header_length)
    try:
        doc = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _error(f"The request's JSON is not valid ({exc}). Received: {len(text):,} bytes of JSON"
                     + (f" and {len(binary):,} of binary data." if header_length is not None else ".")) from None
    except RecursionError:
        raise _error(f"The request's JSON is nested too deeply to read. Received: {len(text):,} bytes.") from None
    if not isinstance(doc, dict):
        raise _error(f"Expected a JSON object with \"inputs\". Received: {_preview(doc)}.")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise _error(f"Expected \"inputs\": a list of exactly one tensor ({PIXELS!r} or {IMAGES!r}). "
                     f"Received: inputs={_preview(inputs)}.")
    tensor: dict[str, Any] = inputs[0]
    raw = _binary_part(tensor, binary)
    name = tensor.get("name")
    if name == PIXELS:
        pixels, images = _pixels(tensor, raw, input_shape), None
    elif name == IMAGES:
        pixels, images = None, _images(tensor, raw)
    else:
        raise _error(f"Expected the input to be named {PIXELS!r} (UINT8 pixels) or {IMAGES!r} (BYTES image "
                     f"files). Received: name={_preview(name)}.")
    request_id = doc.get("id")
    return InferRequest(pixels, images, _outputs(doc), request_id if isinstance(request_id, str) else None)


def encode_response(request: InferRequest, probs: np.ndarray, class_names: list[str], model_name: str,
                    model_version: str) -> tuple[bytes, dict[str, str], str]:
    """The answer's body, extra headers and media type (JSON, or JSON then binary outputs)."""
    outputs, blobs = [], []
    for out in request.outputs:
        if out.name == PROBABILITIES and out.classification:
            k = min(out.classification, probs.shape[1])
            best = np.argsort(-probs, axis=1, kind="stable")[:, :k]
            values: Any = np.array([[f"{row[i]:.6f}:{i}:{class_names[i]}" for i in top]
                                    for row, top in zip(probs, best)], dtype=object).reshape(len(probs), k)
        elif out.name == PROBABILITIES:
            values = probs.astype("<f4", copy=False)
        else:
            values = np.array([class_names[i] for i in probs.argmax(axis=1)], dtype=object)
        datatype = "FP32" if values.dtype != object else "BYTES"
        entry: dict[str, Any] = {"name": out.name, "datatype": datatype, "shape": list(values.shape)}
        if out.binary:
            blob = values.tobytes() if datatype == "FP32" else b"".join(
                struct.pack("<I", len(s := str(v).encode())) + s for v in values.ravel())
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = values.ravel().tolist()
        outputs.append(entry)
    answer = {"model_name": model_name, "model_version": model_version, "outputs": outputs}
    header = json.dumps({"id": request.id, **answer} if request.id is not None else answer).encode()
    if not blobs:
        return header, {}, "application/json"
    return header + b"".join(blobs), {"Inference-Header-Content-Length": str(len(header))}, "application/octet-stream"


# -- the request's parts ----------------------------------------------------------------------------

def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON part and the binary part of a body."""
    if header_length is None:
        return body, b""
    value = header_length.strip()
    if not value.isdigit() or not 0 < int(value) <= len(body):
        raise _error(f"Inference-Header-Content-Length must be the byte length of the JSON at the start of the "
                     f"body, between 1 and the body's {len(body):,} bytes. Received: {header_length[:40]!r}.")
    return body[:int(value)], body[int(value):]


def _binary_part(tensor: dict[str, Any], binary: bytes) -> bytes | None:
    """The input's binary data (``None``: its data is in the JSON), checked against what arrived."""
    parameters = tensor.get("parameters", {})
    if not isinstance(parameters, dict):
        raise _error(f"Expected the input's \"parameters\" to be an object. Received: {_preview(parameters)}.")
    size = parameters.get("binary_data_size")
    if size is None:
        if binary:
            raise _error(f"The body holds {len(binary):,} bytes of binary data, but the input has no "
                         "binary_data_size parameter saying they are its.")
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size != len(binary):
        raise _error(f"The input's binary_data_size must equal the binary bytes after the JSON header. "
                     f"Received: binary_data_size={_preview(size)}, {len(binary):,} bytes after the header.")
    if "data" in tensor:
        raise _error("An input with binary_data_size takes its values from the binary data, not \"data\". "
                     "Received: both.")
    return binary


def _batch(shape: Any, rest: tuple[int, ...], what: str) -> list[int]:
    """A declared shape ``[N, *rest]`` with N ≥ 1, checked; it is only compared, never allocated."""
    if (not isinstance(shape, list) or len(shape) != 1 + len(rest)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in shape)
            or shape[0] < 1 or list(shape[1:]) != list(rest)):
        expected = ", ".join(["N", *map(str, rest)])
        raise _error(f"Expected {what} of shape [{expected}] with N >= 1. Received: shape={_preview(shape)}.")
    return shape


def _pixels(tensor: dict[str, Any], raw: bytes | None, input_shape: tuple[int, ...]) -> np.ndarray:
    if tensor.get("datatype") != "UINT8":
        raise _error(f"Expected {PIXELS!r} to be datatype \"UINT8\" (raw pixels 0-255; the model scales them "
                     f"itself). Received: datatype={_preview(tensor.get('datatype'))}.")
    shape = _batch(tensor.get("shape"), input_shape, f"{PIXELS!r}")
    count = math.prod(shape)
    if raw is not None:
        if len(raw) != count:
            raise _error(f"Shape {shape} needs {count:,} bytes of UINT8 binary data. Received: {len(raw):,}.")
        return np.frombuffer(raw, np.uint8).reshape(shape)
    data = tensor.get("data")
    try:
        array = np.asarray(data)
    except (ValueError, OverflowError, TypeError, RecursionError):
        array = np.asarray([], dtype=object)  # ragged or absurd nesting: reported as not integers below
    if not isinstance(data, list) or array.dtype.kind not in "iu":
        raise _error(f"Expected \"data\": a flat or nested list of integers 0-255. Received: {_preview(data)}.")
    if array.size != count:
        raise _error(f"\"data\" holds {array.size:,} values but shape {shape} needs {count:,}.")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise _error(f"Expected UINT8 values 0-255. Received: values from {array.min()} to {array.max()}.")
    return array.astype(np.uint8).reshape(shape)


def _images(tensor: dict[str, Any], raw: bytes | None) -> list[bytes]:
    if tensor.get("datatype") != "BYTES":
        raise _error(f"Expected {IMAGES!r} to be datatype \"BYTES\" (one encoded image file per element). "
                     f"Received: datatype={_preview(tensor.get('datatype'))}.")
    shape = tensor.get("shape")
    if isinstance(shape, list) and len(shape) == 2 and shape[1:] == [1]:
        shape = shape[:1]  # [N, 1], as some clients send a column of files
    count = _batch(shape, (), f"{IMAGES!r}")[0]
    files = _unpack_bytes(raw, count) if raw is not None else _base64_list(tensor.get("data"), count)
    return files


def _unpack_bytes(raw: bytes, count: int) -> list[bytes]:
    """The protocol's binary BYTES: each element's 4-byte little-endian length, then the element."""
    files: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise _error(f"The BYTES data ends inside an element's 4-byte length, at byte {offset:,} of "
                         f"{len(raw):,}. Received: a truncated or mis-sized binary part.")
        (size,) = struct.unpack_from("<I", raw, offset)
        if offset + 4 + size > len(raw):
            raise _error(f"BYTES element {len(files)} declares {size:,} bytes but only {len(raw) - offset - 4:,} "
                         "follow it. Received: a truncated or mis-sized binary part.")
        files.append(raw[offset + 4:offset + 4 + size])
        offset += 4 + size
        if len(files) > count:
            break
    if len(files) != count:
        raise _error(f"Shape [{count}] needs {count} BYTES elements. Received: {len(files)}"
                     f"{' or more' if len(files) > count else ''}.")
    return files


def _base64_list(data: Any, count: int) -> list[bytes]:
    if not isinstance(data, list) or not all(isinstance(v, str) for v in data) or len(data) != count:
        raise _error(f"Expected \"data\": a list of {count} strings, each an image file in base64 "
                     f"(or send the files as binary data). Received: {_preview(data)}.")
    try:
        return [base64.b64decode(v, validate=True) for v in data]
    except (binascii.Error, ValueError) as exc:
        raise _error(f"An element of \"data\" is not base64 ({exc}). Received: {_preview(data)}.") from None


def _outputs(doc: dict[str, Any]) -> tuple[Output, ...]:
    """The outputs asked for, with each one's binary and classification parameters."""
    parameters = doc.get("parameters", {})
    if not isinstance(parameters, dict):
        raise _error(f"Expected the request's \"parameters\" to be an object. Received: {_preview(parameters)}.")
    binary = _flag(parameters, "binary_data_output", False)
    asked = doc.get("outputs")
    if asked is None:
        return tuple(Output(name, binary) for name in OUTPUTS)
    if not isinstance(asked, list) or not asked or not all(isinstance(o, dict) for o in asked):
        raise _error(f"Expected \"outputs\": a list of objects with a \"name\". Received: {_preview(asked)}.")
    outputs = []
    for entry in asked:
        name, options = entry.get("name"), entry.get("parameters", {})
        if name not in OUTPUTS:
            raise _error(f"Unknown output. Received: name={_preview(name)}. This model's outputs: {list(OUTPUTS)}.")
        if not isinstance(options, dict):
            raise _error(f"Expected output {name!r}'s \"parameters\" to be an object. Received: {_preview(options)}.")
        k = options.get("classification", 0)
        if isinstance(k, bool) or not isinstance(k, int) or k < 0 or (k and name != PROBABILITIES):
            raise _error(f"The classification parameter is a whole number of classes >= 1, on output "
                         f"{PROBABILITIES!r}. Received: classification={_preview(k)} on {name!r}.")
        outputs.append(Output(name, _flag(options, "binary_data", binary), k))
    return tuple(outputs)


def _flag(parameters: dict[str, Any], key: str, default: bool) -> bool:
    value = parameters.get(key, default)
    if not isinstance(value, bool):
        raise _error(f"Parameter {key} must be true or false. Received: {key}={_preview(value)}.")
    return value


def _error(what: str) -> ApiError:
    return ApiError(422, f"{what} Send an Open Inference Protocol request: {EXAMPLE}")


def _preview(value: Any, limit: int = 80) -> str:
    """A short quote of what the client sent (never the whole of a 10 MB list)."""
    if isinstance(value, list) and len(value) > 8:
        return f"{json.dumps(value[:3], default=str)[:limit - 1]}...] (a list of {len(value):,} items)"
    try:
        text = json.dumps(value)
    except (ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[:limit]}... ({type(value).__name__})"
