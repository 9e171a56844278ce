"""The pixel cache's decoding workers: fresh interpreters that load the decoder and nothing of their parent."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from photo_factory import write_clean


def test_decoding_workers_do_not_run_the_parents_script(tmp_path):
    """A script's top-level imports (Keras, say: 750 MB) would otherwise load again in every decoding worker."""
    photos, marker, script = tmp_path / "photos", tmp_path / "started.txt", tmp_path / "user_script.py"
    write_clean(photos, per_class=25)  # 75 files: two chunks of work, so the workers do start
    script.write_text(textwrap.dedent(f"""
        import os

        with open({str(marker)!r}, "a") as log:  # stands for a heavy import at the top of a user's script
            log.write(f"{{os.getpid()}}\\n")

        from cnnkit.datasets.folder import index_folder
        from cnnkit.datasets.pixelcache import decode_all

        if __name__ == "__main__":
            index = index_folder({str(photos)!r})
            decoded = decode_all(index.paths, index.sha256, size=(16, 16), color_mode="rgb", workers=2,
                                 home={str(tmp_path / "home")!r})
            print(decoded.built, int(decoded.ok.sum()))
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "75"]
    assert len(marker.read_text().split()) == 1  # the script ran in the parent alone, not again in each worker


def test_a_worker_that_stops_is_an_error_not_missing_pixels(tmp_path, monkeypatch):
    from cnnkit.datasets import pixelcache
    from cnnkit.datasets.folder import index_folder
    from cnnkit.errors import CnnkitError

    write_clean(tmp_path / "photos", per_class=25)
    index = index_folder(tmp_path / "photos")
    monkeypatch.setattr(pixelcache, "_WORKER", "import sys; sys.exit(3)")
    with pytest.raises(CnnkitError, match=r"A decoding worker stopped \(exit status 3\)"):
        pixelcache.decode_all(index.paths, index.sha256, size=(16, 16), color_mode="rgb", workers=2, home=tmp_path)
    assert not list((tmp_path / "pixel-cache").iterdir())  # nothing half-written is left as a cache
