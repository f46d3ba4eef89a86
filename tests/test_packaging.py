"""A wheel built with `pip install .` (not only editable) carries its templates."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_finds_its_templates(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("alertmail-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "receiver/_templates/alert.html.j2" in names
    assert "receiver/_templates/digest.html.j2" in names
    assert any(n.startswith("exporters/") for n in names)
    # The operator pages' own templates, static files and example payloads.
    assert any(n.startswith("receiver/web/templates/") for n in names)
    assert any(n.startswith("receiver/web/static/") for n in names)
    assert any(n.startswith("receiver/web/examples/") for n in names)
    target = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    probe = (
        "import receiver.render as r, zoneinfo;"
        "d = r.packaged_templates_dir(); print(d);"
        "errs = r.Renderer(None, zoneinfo.ZoneInfo('UTC')).check(); print(errs); "
        "raise SystemExit(1 if errs else 0)"
    )
    # Run from elsewhere so the source tree cannot be picked up by accident.
    run = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(target)},
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[0] == str(target / "receiver" / "_templates")
