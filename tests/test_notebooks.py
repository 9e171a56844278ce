"""The example notebooks run on a real kernel and show their pictures (issue 30).

Each notebook in examples/ is executed with nbclient on an ipykernel, with its parameters cell swapped
for small limits, in a scratch folder; then executed again in the same folder, as Restart & Run All
does. The cells tagged samples, curves, confusion, predictions and gradcam must display a PNG; the
report cell an HTML page; no cell may raise or print a TensorFlow line on stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from helpers import MNIST_SUBSET

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PICTURES = ("samples", "curves", "confusion", "predictions", "gradcam")
TENSORFLOW_NOISE = ("tensorflow", "oneDNN", "cuda", "retracing", "I0000", "W0000", "E0000")


def _parameters(name: str, folder: Path) -> str:
    """The small limits each notebook runs with here."""
    if name == "mnist":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        return (f'DATA = {str(MNIST_SUBSET)!r}\nOUT = "runs/notebook-mnist"\nEPOCHS = 1\n'
                f"TRAIN_LIMIT = 600\nTEST_LIMIT = 120\nPORT = {port}\n")
    from photo_factory import write_clean

    write_clean(folder / "weather", per_class=12)
    return 'FOLDER = "weather"\nOUT = "runs/notebook-weather"\nEPOCHS = 2\n'


def _execute(notebook_path: Path, parameters: str, folder: Path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(notebook_path, as_version=4)
    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "each example has one cell tagged parameters"
    cells[0].source = parameters
    env = {**os.environ, "CNNKIT_OFFLINE": "1"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a learner's kernel starts: cnnkit must quiet TensorFlow itself
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    client.execute(env=env)
    return notebook


def _outputs(notebook) -> dict[str, list[dict]]:
    return {tag: c.outputs for c in notebook.cells if c.cell_type == "code" for tag in c.metadata.get("tags", [])}


@pytest.mark.parametrize("name", ["mnist", "weather"])
def test_example_notebook_runs_shows_its_pictures_and_runs_again(name, tmp_path):
    pytest.importorskip("nbclient")
    source = EXAMPLES / f"{name}.ipynb"
    saved = json.loads(source.read_text())
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in saved["cells"] if c["cell_type"] == "code"), "committed without outputs"
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(source, folder / source.name)
    parameters = _parameters(name, folder)
    for attempt in ("first", "Restart & Run All"):
        notebook = _execute(folder / source.name, parameters, folder)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        assert all(c.execution_count for c in code), f"{attempt}: every cell ran"
        errors = [o for c in code for o in c.outputs if o.output_type == "error"]
        assert not errors, (attempt, errors)
        outputs = _outputs(notebook)
        for tag in PICTURES:
            kinds = [set(o.get("data", {})) for o in outputs[tag]]
            assert any("image/png" in k for k in kinds), (attempt, tag, kinds)
        report = [o["data"]["text/html"] for o in outputs["report"] if "text/html" in o.get("data", {})]
        assert report and report[0].startswith("<iframe srcdoc="), (attempt, outputs["report"])
        stderr = "".join(o.text for c in code for o in c.outputs if o.output_type == "stream" and o.name == "stderr")
        assert not any(word in stderr for word in TENSORFLOW_NOISE), (attempt, stderr[-2000:])
        train_cell = next(c for c in code if "cnnkit.train(" in c.source)
        printed = "".join(o.text for o in train_cell.outputs if o.output_type == "stream")
        served = "".join(o.text for c in code if "server.url" in c.source
                         for o in c.outputs if o.output_type == "stream")
        if name == "mnist":
            assert served.startswith("Prediction: "), served
        if attempt == "first":
            assert "Test accuracy: " in printed, printed[-2000:]
        else:
            assert "already holds this run (same settings, same data): returning it" in printed, printed[-2000:]
