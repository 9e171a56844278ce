"""cnnkit audit: folds that keep near-duplicates whole, planted wrong labels found by models that never saw them,
copies with different labels reported, the outputs written, bad input refused with a hint."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from cnnkit.audits.folds import assign_folds, group_ids
from cnnkit.errors import DataError

from helpers import MNIST_SUBSET, assert_clean_error, run_cli

COLOURS = {"cloudy": (110, 110, 110), "rain": (40, 70, 190), "shine": (230, 190, 50)}


def _photo(label: str, seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """The class's colour under a texture of its own (no two images hash alike), larger than the hashing floor."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, 20, (6, 8, 3))  # low frequencies: what a perceptual hash sees
    texture = np.kron(coarse, np.ones((8, 8, 1)))[: size[1], : size[0]]
    pixels = np.clip(np.array(COLOURS[label]) + texture + rng.normal(0, 3, texture.shape), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


def _folder(root, per_class: int = 16):
    """Class folders; two rain photos filed under shine (wrong labels), a resized JPEG copy of a cloudy photo
    filed under rain (a near-duplicate conflict), and a byte copy of a shine photo filed under cloudy."""
    for c, label in enumerate(COLOURS):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            _photo(label, 100 * c + i).save(root / label / f"{label}{i}.png")
    for i in (0, 1):
        _photo("rain", 1000 + i).save(root / "shine" / f"planted{i}.png")
    original = Image.open(root / "cloudy" / "cloudy3.png")
    original.resize((60, 45)).save(root / "rain" / "copy-of-cloudy3.jpg", quality=92)
    shutil.copyfile(root / "shine" / "shine5.png", root / "cloudy" / "copy-of-shine5.png")
    return root


def test_folds_are_stratified_and_keep_every_group_whole():
    labels = np.array([0] * 10 + [1] * 10)
    groups = [[0, 1, 2], [10, 11], [5, 15]]  # the last spans two classes: still one fold
    folds = assign_folds(labels, 5, seed=3, groups=groups)
    for group in groups:
        assert len(set(folds[group])) == 1, (group, folds[group])
    assert folds.min() == 0 and folds.max() == 4  # every image dealt, into five folds
    for fold in range(5):
        assert set(labels[folds == fold]) == {0, 1}  # every fold holds both classes
    assert group_ids(4, [[2, 3]]).tolist() == [0, 1, 2, 2]
    np.testing.assert_array_equal(folds, assign_folds(labels, 5, seed=3, groups=groups))  # seeded


def test_a_class_smaller_than_the_folds_is_refused_with_the_fix():
    with pytest.raises(DataError, match=r"Received: folds=5 and class 'b' with 3 images\.") as info:
        assign_folds(np.array([0] * 8 + [1] * 3), 5, seed=0, class_names=["a", "b"])
    assert "Set folds to 3 or fewer" in info.value.hint


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """The planted folder with a manifest of every file (Windows line ends), audited once from the command line
    through the manifest: (folder, audit folder, stdout)."""
    from cnnkit.cli import main

    root = tmp_path_factory.mktemp("audited")
    data, out = _folder(root / "photos"), root / "audit"
    files = sorted(p.relative_to(data) for p in data.rglob("*") if p.is_file())
    (data / "labels.csv").write_bytes(("path,label\r\n" + "".join(f"{p},{p.parent}\r\n" for p in files)).encode())
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        code = main(["audit", str(data / "labels.csv"), "--folds", "4", "--epochs", "8", "--out", str(out)])
    assert code == 0
    return data, out, capture.getvalue()


def _rows(out):
    return list(csv.DictReader(io.StringIO((out / "suspects.csv").read_text())))


def test_audit_finds_planted_labels_and_conflicting_copies(audited):
    data, out, stdout = audited
    rows = _rows(out)
    assert list(rows[0]) == ["path", "finding", "given", "suggested", "score", "rank", "decision"]
    labels = [r for r in rows if r["finding"] == "label"]
    assert {r["path"] for r in labels[:2]} == {"shine/planted0.png", "shine/planted1.png"}, labels[:4]
    assert all(r["suggested"] == "rain" for r in labels[:2])
    conflicts = {(r["finding"], r["path"], r["given"]) for r in rows if r["finding"].startswith("conflict")}
    assert ("conflict (near-duplicate)", "rain/copy-of-cloudy3.jpg", "rain") in conflicts
    assert ("conflict (near-duplicate)", "cloudy/cloudy3.png", "cloudy") in conflicts
    assert ("conflict (byte copy)", "cloudy/copy-of-shine5.png", "cloudy") in conflicts
    saved = np.load(out / "oof.npz")
    names = saved["names"].tolist()
    folds = saved["folds"]
    assert folds[names.index("rain/copy-of-cloudy3.jpg")] == folds[names.index("cloudy/cloudy3.png")]
    np.testing.assert_allclose(saved["probs"].sum(axis=1), 1.0, atol=1e-4)
    summary = json.loads((out / "audit.json").read_text())
    assert summary["images"] == len(names) == 3 * 16 + 2 + 1 and summary["folds"] == 4
    assert summary["label_issues"] == len(labels) and summary["conflicts"] == 2
    assert summary["data"] == str((data / "labels.csv").resolve())
    page = (out / "audit.html").read_text()
    assert page.count('<img src="data:image/png;base64,') >= len(labels[:60]) + 2
    assert "Likely label errors: " in stdout and "Estimated wrong labels per class: " in stdout
    assert "audit.html" in stdout


def _snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _decide(out, decisions: dict[str, str]):
    """suspects.csv with ``decisions`` (path -> decision) filled in, as a person would."""
    rows = _rows(out)
    for row in rows:
        row["decision"] = decisions.get(row["path"], row["decision"])
    with open(out / "suspects.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _copies(audited, tmp_path):
    """The audited folder and its audit, copied where a test may change them: (folder, audit folder)."""
    source, audit_out, _ = audited
    data, out = tmp_path / "photos", tmp_path / "audit"
    shutil.copytree(source, data)
    shutil.copytree(audit_out, out)
    return data, out


def test_relabel_moves_files_deletes_nothing_and_undoes_byte_for_byte(audited, tmp_path, capsys):
    data, out = _copies(audited, tmp_path)
    before = _snapshot(data)
    _decide(out, {"shine/planted0.png": "relabel", "shine/planted1.png": "relabel",
                  "cloudy/copy-of-shine5.png": "remove"})
    code, stdout, stderr = run_cli(capsys, "relabel", out / "suspects.csv", "--data", data)  # the folder, not the CSV
    assert code == 0, stderr
    assert "shine/planted0.png -> rain/planted0.png (relabel rain)" in stdout and "Dry run" in stdout
    assert _snapshot(data) == before  # a dry run moves nothing
    code, stdout, stderr = run_cli(capsys, "relabel", out / "suspects.csv", "--data", data, "--apply")
    assert code == 0, stderr
    after = _snapshot(data)
    assert "rain/planted0.png" in after and "shine/planted0.png" not in after
    assert after["rain/planted1.png"] == before["shine/planted1.png"]
    assert (out / "quarantine" / "cloudy" / "copy-of-shine5.png").read_bytes() == before["cloudy/copy-of-shine5.png"]
    assert len(after) == len(before) - 1  # one file quarantined, none deleted
    undo = next(out.glob("undo-relabel-*.json"))
    assert f"cnnkit relabel --undo {undo}" in stdout
    code, stdout, stderr = run_cli(capsys, "relabel", "--undo", undo)
    assert code == 0, stderr
    assert _snapshot(data) == before


def test_relabel_rewrites_a_manifest_and_undoes_it(audited, tmp_path, capsys):
    data, out = _copies(audited, tmp_path)
    before = _snapshot(data)
    _decide(out, {"shine/planted0.png": "relabel", "shine/planted1.png": "remove"})
    code, stdout, stderr = run_cli(capsys, "relabel", out / "suspects.csv", "--data", data / "labels.csv", "--apply")
    assert code == 0, stderr
    text = (data / "labels.csv").read_text()
    assert "shine/planted0.png,rain\n" in text and "planted1" not in text
    assert _snapshot(data).keys() == before.keys()  # no file moved: the manifest says what is what
    code, _, stderr = run_cli(capsys, "relabel", "--undo", next(out.glob("undo-relabel-*.json")))
    assert code == 0, stderr
    assert _snapshot(data) == before  # CRLF line ends and all


def test_relabel_refuses_a_decision_it_cannot_carry_out(audited, tmp_path, capsys):
    _, audit_out, _ = audited
    out = tmp_path / "audit"
    shutil.copytree(audit_out, out)
    _decide(out, {"shine/planted0.png": "rename"})
    code, _, stderr = run_cli(capsys, "relabel", out / "suspects.csv")
    assert_clean_error(code, stderr, "Expected each decision to be relabel, remove or keep. Received: 'rename' on line")
    (out / "suspects.csv").write_text("path,decision,colour\nshine/planted0.png,keep,red\n")
    code, _, stderr = run_cli(capsys, "relabel", out / "suspects.csv")
    assert_clean_error(code, stderr, "(unknown: colour)")
    (out / "suspects.csv").write_text("path,decision\nshine/gone.png,remove\n")
    code, _, stderr = run_cli(capsys, "relabel", out / "suspects.csv")
    assert_clean_error(code, stderr, "Received: 'shine/gone.png' on line 2 of suspects.csv, not found")
    (out / "suspects.csv").write_text("path,decision,label\nshine/planted0.png,relabel,rain\n"
                                      "shine/planted0.png,remove,\n")
    code, _, stderr = run_cli(capsys, "relabel", out / "suspects.csv")
    assert_clean_error(code, stderr, "Received: 'shine/planted0.png' with relabel rain on line 2 of suspects.csv and "
                                     "remove on line 3")
    (out / "suspects.csv").write_text("path,decision,label\nshine/planted0.png,relabel,snow\n")
    code, _, stderr = run_cli(capsys, "relabel", out / "suspects.csv")
    assert_clean_error(code, stderr, "Received: 'snow' on line 2 of suspects.csv; classes: cloudy, rain, shine.")
    (out / "audit.json").unlink()
    code, _, stderr = run_cli(capsys, "relabel", out / "suspects.csv")
    assert_clean_error(code, stderr, "Expected the audited data: no audit.json beside the decisions file",
                       "Hint: Pass --data")


def test_bad_audit_input_gets_one_error_and_a_hint(tmp_path, capsys):
    data = tmp_path / "photos"
    for c, label in enumerate(COLOURS):
        (data / label).mkdir(parents=True)
        for i in range(3):
            _photo(label, 10 * c + i).save(data / label / f"{i}.png")
    code, _, stderr = run_cli(capsys, "audit", data, "--folds", "5", "--epochs", "1", "--out", tmp_path / "a")
    assert_clean_error(code, stderr, "Error: Each class needs at least as many images as folds",
                       "Hint: Set --folds to 3 or fewer")
    code, _, stderr = run_cli(capsys, "audit", data, "--budget", "0", "--out", tmp_path / "b")
    assert_clean_error(code, stderr, "Error: Expected budget to be a positive number of minutes. Received: budget=0.0")
    code, _, stderr = run_cli(capsys, "audit", data, "--folds", "3", "--budget", "0.001", "--out", tmp_path / "c")
    assert_clean_error(code, stderr, "Error: The budget is too small for 3 folds", "Received: budget=0.001 (minutes)",
                       "Hint: Set --budget to at least")
    assert not any((tmp_path / name).exists() for name in "abc")  # nothing written for a refused audit


@pytest.fixture(scope="module")
def excluded_run(audited, tmp_path_factory):
    """One epoch of recipe small on the audited folder, leaving out what the audit listed: (run folder, audit)."""
    from cnnkit.cli import main

    data, out, _ = audited
    run = tmp_path_factory.mktemp("excluded") / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["train", str(data), "--recipe", "small", "--epochs", "1", "--exclude", str(out / "suspects.csv"),
                     "--out", str(run)])
    assert code == 0
    return run, out


def test_training_leaves_out_the_images_an_audit_listed_and_says_so(excluded_run, capsys):
    run, out = excluded_run
    listed = {r["path"] for r in _rows(out) if r["decision"] != "keep"}
    report = (run / "data_report.txt").read_text()
    line = next(line for line in report.splitlines() if line.startswith("Excluded: "))
    left_out = int(line.split()[1])
    assert 0 < left_out <= len(listed) and f"listed in {out / 'suspects.csv'} (label " in line, line
    metrics = json.loads((run / "metrics.json").read_text())
    used = metrics["train_size"] + metrics["val_size"] + metrics["test_samples"]
    assert used == 3 * 16 + 2 + 1 - left_out  # the folder's usable images, less those left out



def test_training_on_arrays_leaves_out_the_rows_an_audit_named(tmp_path, capsys):
    listing = tmp_path / "suspects.csv"
    listing.write_text("path,finding,decision\ntrain[0],label,\ntrain[5],stray,\ntrain[7],label,keep\n"
                       "test[1],label,\nphotos/a.png,label,\n")
    code, _, stderr = run_cli(capsys, "train", MNIST_SUBSET, "--recipe", "small", "--epochs", "1", "--exclude",
                              listing, "--out", tmp_path / "run")
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["train_size"] + metrics["val_size"] == 3000 - 2 and metrics["test_samples"] == 600 - 1
    report = (tmp_path / "run" / "data_report.txt").read_text()
    assert f"Excluded: 3 images listed in {listing} (label 2, stray 1); 1 listed path not among the images." in report


@pytest.mark.browser
def test_the_reports_data_section_shows_the_copies_collapsed_and_fits_the_page(excluded_run, browser):
    """The Data section's findings are headings with counts, closed; opened, the near-duplicates are thumbnails;
    nothing is wider than a 1,280-px window."""
    run, _ = excluded_run
    tab = browser.new_page(viewport={"width": 1280, "height": 900})
    tab.goto((run / "report.html").as_uri())
    tab.wait_for_load_state("load")
    data = tab.locator("section#data")
    summaries = data.locator("details > summary").all_inner_texts()
    assert any(s.startswith("Near-duplicate groups (1; each kept whole in one split; 1 with different labels)")
               for s in summaries), summaries
    assert any(s.startswith("Byte-identical copies (1, one of each kept; 1 with different labels)") for s in summaries)
    assert any(s.startswith("Images left out (exclude: ") for s in summaries)
    assert any(s == "The loader's report, as text" for s in summaries)
    assert data.locator("details[open]").count() == 0  # collapsed by default
    assert not data.locator("pre").first.is_visible()
    group = data.locator("details", has_text="Near-duplicate groups")
    group.locator("summary").click()
    thumbs = group.evaluate("""d => Array.from(d.querySelectorAll('img')).map(
        img => ({alt: img.alt, ok: img.complete && img.naturalWidth > 0}))""")
    assert {t["alt"] for t in thumbs} == {"cloudy/cloudy3.png", "rain/copy-of-cloudy3.jpg"}
    assert all(t["ok"] for t in thumbs)
    for details in data.locator("details").all():  # everything open: still no sideways scrolling
        details.evaluate("d => { d.open = true; }")
    assert tab.evaluate("() => document.documentElement.scrollWidth") <= 1280
    tab.close()


def test_an_audit_run_again_goes_on_from_the_folds_it_finished(audited, tmp_path, capsys):
    """As after a kill: every fold but one kept in the audit folder; the same command trains only that one."""
    data, audit_out, _ = audited
    out = tmp_path / "audit"
    shutil.copytree(audit_out, out)
    before = np.load(audit_out / "oof.npz")
    (out / "folds" / "fold-1.npz").unlink()
    (out / "suspects.csv").unlink()
    code, stdout, stderr = run_cli(capsys, "audit", data / "labels.csv", "--folds", "4", "--epochs", "8",
                                   "--out", out)
    assert code == 0, stderr
    assert stdout.count("kept from an earlier launch") == 3 and "Fold 2/4: trained and scored" in stdout
    after = np.load(out / "oof.npz")
    others = before["folds"] != 1
    np.testing.assert_array_equal(after["probs"][others], before["probs"][others])
    assert (out / "suspects.csv").is_file()
    code, stdout, _ = run_cli(capsys, "audit", data / "labels.csv", "--folds", "4", "--epochs", "7", "--out", out)
    assert code == 0 and "kept from an earlier launch" not in stdout  # other settings: nothing kept is used
