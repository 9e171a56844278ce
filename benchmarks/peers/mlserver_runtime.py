"""MLServer peer for ``serve_peers.py``: the cnnkit model as a custom MLServer runtime (V2 REST).

``serve_peers.py`` writes a ``settings.json`` and a ``model-settings.json`` naming this class
(``"implementation": "mlserver_runtime.KerasImageRuntime"``, ``parameters.uri``: the ``.keras`` file) and
runs ``mlserver start FOLDER`` from ``benchmarks/.venv-mlserver`` with this folder on ``PYTHONPATH``.

``POST /v2/models/{name}/infer`` takes a V2 JSON request whose first input is ``BYTES`` with
``"parameters": {"content_type": "base64"}``: the image file, base64-encoded. It answers two outputs,
``label`` (``BYTES``, first) and ``probabilities`` (``FP32``, ``[N, K]``). ``GET /v2/models/{name}/ready``
answers 200 once the model is loaded.
"""

from __future__ import annotations

import numpy as np
from mlserver import MLModel
from mlserver.codecs import Base64Codec, NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri
from peer_model import PeerModel


class KerasImageRuntime(MLModel):
    """Image files in (one per request in the benchmark), best labels and class probabilities out."""

    async def load(self) -> bool:
        self.model = PeerModel(await get_model_uri(self.settings))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        files = self.decode(payload.inputs[0], default_codec=Base64Codec)
        probs = self.model.probabilities(np.stack([self.model.decode(data) for data in files]))
        labels = [self.model.class_names[i] for i in probs.argmax(axis=1)]
        return InferenceResponse(model_name=self.name, model_version=self.version, id=payload.id,
                                 outputs=[StringCodec.encode_output("label", labels),
                                          NumpyCodec.encode_output("probabilities", probs)])
