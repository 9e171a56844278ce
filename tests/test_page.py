"""The page at `/` in a real browser (Debian's Chromium via Playwright) over a real uvicorn server.

`make test` installs Chromium and sets CNNKIT_REQUIRE_BROWSER=1, so a missing browser fails
there; a bare `pytest` without it skips these tests and says why.
"""

from __future__ import annotations

import io
import re
import shutil
import socket
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
with warnings.catch_warnings():  # Starlette 1.10 prefers httpx2; httpx 0.28.1 is the pinned, working client
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from cnnkit.predictor import Predictor  # noqa: E402
from cnnkit.server import ServerSettings, create_app  # noqa: E402
from cnnkit.server.app import STATIC  # noqa: E402
from cnnkit.server.cli import build_server  # noqa: E402

from helpers import tiny_predictor, wait_ready  # noqa: E402

SCREENSHOT = Path("/tmp/cnnkit_page.png")  # a copy for people to look at


@pytest.fixture(scope="module")
def server(browser, trained_run):
    """The trained run behind a real uvicorn on a free loopback port: (base URL, predictor)."""
    predictor = Predictor.from_artifact(trained_run.run_dir)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = ServerSettings(port=port, model_name="digits", max_wait_ms=1)
    uvicorn_server = build_server(create_app(predictor, settings), settings, log_level="warning")
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.05)
    yield base, predictor
    uvicorn_server.should_exit = True
    thread.join(15)


@pytest.fixture
def page(browser, server):
    """A fresh page on `/`, ready to predict; records console errors/warnings and uncaught exceptions."""
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    tab = context.new_page()
    tab.noise = []
    tab.on("console", lambda m: m.type in ("error", "warning") and tab.noise.append(f"{m.type}: {m.text}"))
    tab.on("pageerror", lambda exc: tab.noise.append(f"pageerror: {exc}"))
    tab.goto(server[0] + "/")
    tab.wait_for_selector("#predict:enabled")
    yield tab
    context.close()


def shown_answer(page) -> tuple[str, list[tuple[str, float, str]]]:
    """The page's top label and its bars: (label, probability, percentage text)."""
    page.locator("#bars li").first.wait_for()
    rows = page.eval_on_selector_all(
        "#bars li", "items => items.map(li => [li.dataset.label, Number(li.dataset.probability), "
                    "li.querySelector('.value').textContent, parseFloat(li.querySelector('.fill').style.width)])")
    for _, probability, text, width in rows:
        assert text == f"{100 * probability:.1f}%" and width == pytest.approx(100 * probability, abs=0.05)
    return page.text_content("#top strong"), [(label, p, text) for label, p, text, _ in rows]


def assert_same_answer(shown, expected: dict) -> None:
    label, rows = shown
    assert label == expected["label"]
    assert [r[0] for r in rows] == [e["label"] for e in expected["top_k"]]
    assert [r[1] for r in rows] == pytest.approx([e["probability"] for e in expected["top_k"]], abs=1e-5)


def test_page_and_its_files_are_served_and_self_contained():
    with TestClient(create_app(tiny_predictor())) as client:
        wait_ready(client)  # CPython 3.11.7 can fail compiling in two threads at once (autograph + an import)
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for asset, kind in [("page.js", "javascript"), ("page.css", "text/css")]:
            response = client.get(f"/static/{asset}")
            assert response.status_code == 200 and kind in response.headers["content-type"]
            assert f"/static/{asset}" in page.text
        missing = client.get("/static/nothing.js")
        assert missing.status_code == 404 and missing.json()["code"] == 404
    for file in STATIC.iterdir():  # nothing fetched from elsewhere: no CDN, no fonts, no analytics
        assert not re.search(r"(https?:)?//[\w.-]+\.\w+/", file.read_text()), f"{file.name} loads from outside"


@pytest.mark.browser
def test_drawn_digit_goes_out_as_mnist_would_draw_it(page, server, tmp_path):
    base, predictor = server
    info = page.text_content("#model-info")
    assert "28×28 grayscale" in info and "10 classes: 0, 1, 2" in info

    page.click("#predict")  # nothing drawn: the page says so and sends nothing
    assert "draw a digit" in page.text_content("#error")

    pad = page.locator("#pad").bounding_box()
    x = pad["x"] + pad["width"] / 2 + 30  # off-centre on purpose: the page must re-centre it
    page.mouse.move(x, pad["y"] + 40)
    page.mouse.down()
    page.mouse.move(x, pad["y"] + 240, steps=15)
    page.mouse.up()
    with page.expect_request(lambda r: "/v1/predict" in r.url) as sent:
        page.click("#predict")
    request = sent.value
    assert request.url.endswith("/v1/predict?top_k=5") and request.headers["content-type"] == "image/png"
    shown = shown_answer(page)
    assert page.is_hidden("#error")

    rgba = np.asarray(Image.open(io.BytesIO(request.post_data_buffer)).convert("RGBA"))
    assert rgba.shape == (28, 28, 4) and (rgba[..., 3] == 255).all()
    assert (rgba[..., 0] == rgba[..., 1]).all() and (rgba[..., 1] == rgba[..., 2]).all()  # grey
    ink = rgba[..., 0].astype(float)
    rows, cols = np.nonzero(ink)
    assert rows.max() - rows.min() + 1 == 20  # the longer side scaled to 20 px
    assert cols.max() - cols.min() + 1 <= 4  # ... keeping the aspect ratio: still a thin stroke
    centre = [(ink.sum(axis=a) * (np.arange(28) + 0.5)).sum() / ink.sum() for a in (1, 0)]
    assert centre == pytest.approx([14, 14], abs=1.0)  # centred by its centre of mass
    preview = page.evaluate("Array.from(document.getElementById('sample').getContext('2d')"
                            ".getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0))")
    assert np.array_equal(np.array(preview).reshape(28, 28), rgba[..., 0])  # the preview is what was sent

    answer = httpx.post(f"{base}/v1/predict?top_k=5", content=request.post_data_buffer,
                        headers={"content-type": "image/png"}).json()["predictions"][0]
    assert_same_answer(shown, answer)
    print(f"drawn stroke: the page shows {shown[0]!r} ({shown[1][0][2]})")

    page.screenshot(path=tmp_path / "page.png", full_page=True)
    shutil.copy(tmp_path / "page.png", SCREENSHOT)
    page.click("#clear")
    assert page.evaluate("document.getElementById('pad').getContext('2d')"
                         ".getImageData(0, 0, 280, 280).data.every((v, i) => i % 4 === 3 || v === 0)")
    assert page.noise == []


@pytest.mark.browser
def test_uploaded_photo_is_predicted_and_shown(page, server, mnist_subset, tmp_path):
    _, predictor = server
    photo = tmp_path / "seven.png"
    digit = mnist_subset.x_test[list(mnist_subset.y_test).index(7), ..., 0]
    Image.fromarray(digit).resize((140, 140)).convert("RGB").save(photo)  # bigger and in colour, like a photo

    page.click("#mode-upload")
    assert page.get_attribute("#mode-upload", "aria-pressed") == "true" and page.is_hidden("#draw-panel")
    with page.expect_request(lambda r: "/v1/predict" in r.url) as sent:
        page.set_input_files("#file", photo)
    assert sent.value.headers["content-type"].startswith("multipart/form-data")
    shown = shown_answer(page)
    expected = predictor.predict_files([photo], top_k=5)[0]
    assert_same_answer(shown, {"label": expected.label,
                               "top_k": [{"label": label, "probability": p} for label, p in expected.top_k]})
    assert page.evaluate("document.getElementById('photo').naturalWidth") == 140
    page.screenshot(path=tmp_path / "upload.png", full_page=True)
    shutil.copy(tmp_path / "upload.png", SCREENSHOT.with_name("cnnkit_page_upload.png"))
    assert page.noise == []


@pytest.mark.browser
def test_server_errors_are_shown_on_the_page(page, tmp_path):
    page.click("#mode-upload")
    page.set_input_files("#file", {"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"})
    error = page.locator("#error")
    error.wait_for()
    assert re.match(r"Error 422: .*notes\.png", error.text_content()), error.text_content()
    assert page.get_attribute("#error", "role") == "alert"
    # The browser itself logs a failed request; nothing else may appear.
    page.screenshot(path=tmp_path / "error.png", full_page=True)
    shutil.copy(tmp_path / "error.png", SCREENSHOT.with_name("cnnkit_page_error.png"))
    assert [n for n in page.noise if "status of 422" not in n] == []
