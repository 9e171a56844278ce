"""report.html: written by every run, rebuilt by `cnnkit report`, self-contained, and opened in Chromium."""

from __future__ import annotations

import re
import shutil

import pytest
from PIL import Image

from cnnkit.artifact import REPORT
from cnnkit.cli import main
from cnnkit.errors import ArtifactError
from cnnkit.report import build_report

SECTIONS = ("Summary", "Data", "Model, layer by layer", "Training and timings", "Evaluation on the test set",
            "Top losses", "Grad-CAM: what the network looks at", "Calibration", "Environment and configuration")


@pytest.fixture(scope="module")
def report_html(trained_run):
    return (trained_run.run_dir / REPORT).read_text(encoding="utf-8")


def test_every_run_writes_a_report_with_every_section(trained_run, report_html):
    for title in SECTIONS:
        assert f"<h2>{title}" in report_html, title
    assert f"{trained_run.metrics['test_accuracy']:.2%}" in report_html
    # The explain table with its filled-in parameter formulas, and the calibration error.
    assert '<table class="explain">' in report_html
    assert "<td>5·5·1·16 = 400</td>" in report_html  # fast: a 5x5 conv, 16 filters, no bias (batch norm follows)
    assert f"{trained_run.metrics['ece']:.2%}" in report_html
    for name in ("samples.png", "top_losses.png", "gradcam.png", "reliability.png"):
        with Image.open(trained_run.run_dir / name) as image:
            assert image.format == "PNG"


def test_the_report_is_one_self_contained_file(report_html):
    sources = re.findall(r'<img [^>]*src="([^"]*)"', report_html)
    assert len(sources) >= 7  # samples, curves, confusion, predictions, top losses, Grad-CAM, reliability
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(href|src)="(https?:)?//', report_html)  # nothing fetched from anywhere
    assert "<script" not in report_html


def test_cnnkit_report_rebuilds_it_from_the_run_folder(trained_run, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(trained_run.run_dir, run)
    (run / REPORT).unlink()
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / REPORT)
    html = (run / REPORT).read_text(encoding="utf-8")
    assert all(f"<h2>{title}" in html for title in SECTIONS)


def test_report_needs_a_finished_run(tmp_path, capsys):
    with pytest.raises(ArtifactError, match="finished run folder"):
        build_report(tmp_path)
    assert main(["report", str(tmp_path)]) != 0
    assert "Error: Expected a finished run folder" in capsys.readouterr().err


@pytest.mark.browser
def test_report_opens_in_chromium(browser, trained_run, tmp_path):
    tab = browser.new_page(viewport={"width": 1200, "height": 900})
    problems: list[str] = []
    tab.on("console", lambda m: m.type in ("error", "warning") and problems.append(f"{m.type}: {m.text}"))
    tab.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    tab.on("requestfailed", lambda r: problems.append(f"requestfailed: {r.url[:80]}"))
    tab.goto((trained_run.run_dir / REPORT).as_uri())
    tab.wait_for_load_state("load")
    images = tab.evaluate("""() => Array.from(document.images).map(
        img => ({alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight}))""")
    assert len(images) >= 7
    broken = [img["alt"] for img in images if not (img["complete"] and img["width"] > 0 and img["height"] > 0)]
    assert not broken, f"images that did not load: {broken}"
    assert [h.strip() for h in tab.locator("h2").all_inner_texts()] == list(SECTIONS)
    shot = tmp_path / "report.png"
    tab.screenshot(path=shot, full_page=True)
    with Image.open(shot) as image:
        assert image.width >= 1000 and image.height > 2000  # the whole page, not an empty viewport
    tab.close()
    assert not problems, problems
