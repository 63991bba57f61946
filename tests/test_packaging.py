"""The README's commands and CI agree, the README's quickstart runs as written, its links resolve, and the package
ships what it needs at run time (the wheel itself: tests/test_wheel.py)."""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 120
# Docs (and sections) the README links to that other branches are adding; remove an entry once it is merged.
def _readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", README.read_text())


def _quickstart() -> str:
    section = README.read_text().split("\n## Quickstart\n", 1)[1]
    return re.match(r"```python\n(.+?)\n```", section, re.S).group(1)


def _anchor(heading: str) -> str:
    """GitHub's anchor for a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_starts_with_two_commands_and_ci_runs_the_test_one():
    cmds = _readme_commands()
    text = README.read_text()
    assert text.index("```bash") < text.index("\n## "), "the two commands come first"
    assert len(cmds) >= 2
    setup_run, tests = cmds[0], cmds[1]
    assert ".venv" in setup_run and 'pip install -q -e ".[dev]"' in setup_run and "dvis predict" in setup_run
    assert "pytest" in tests and "import torchvision, timm" in tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci
    # after the suite, CI lints and tests the release-shaped install
    assert ci.index(tests) < ci.index("ruff check .") and ci.index(tests) < ci.index("tests/test_wheel.py")


def test_readme_is_short_and_its_links_resolve():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES
    links = re.findall(r"\]\(([^)#]+)(?:#([^)]*))?\)", text)
    local = [(path, anchor) for path, anchor in links if not path.startswith(("http://", "https://"))]
    assert len(local) >= 5
    for path, anchor in local:
        assert (ROOT / path).is_file(), f"README links to a missing file: {path}"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", (ROOT / path).read_text(), re.M)
            assert anchor in {_anchor(h) for h in headings}, f"README links to a missing section: {path}#{anchor}"


def test_readme_quickstart_runs_as_written(tmp_path):
    code = _quickstart()
    assert len([line for line in code.splitlines() if line.strip()]) <= 5
    (tmp_path / "examples" / "data").mkdir(parents=True)
    shutil.copy2(ROOT / "examples" / "data" / "shapes.mp4", tmp_path / "examples" / "data")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    printed = ast.literal_eval(out.stdout.strip())  # the quickstart prints a list of (track_id, label_name, score)
    assert {name for _, name, score in printed if score > 0.5} == {"circle", "square", "triangle"}
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(doc["instances"]) == len(printed) and doc["num_frames"] == 48


def test_package_data_patterns_cover_every_data_file():
    """Fast guard for tests/test_wheel.py: every non-Python file under dvis_sdk/ matches a package-data pattern of
    pyproject.toml (setuptools expands them with the same recursive glob as Path.glob)."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["dvis_sdk"]
    pkg = ROOT / "dvis_sdk"
    data = {p for p in pkg.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    covered = {p for pattern in patterns for p in pkg.glob(pattern)}
    assert not data - covered, f"data files no package-data pattern ships: {sorted(map(str, data - covered))}"
    for needed in ("weights_manifest.json", "py.typed", "weights/dvis-tiny-shapes/model.safetensors"):
        assert pkg / needed in covered, needed


def test_example_video_and_package_data_exist():
    assert (ROOT / "examples" / "data" / "shapes.mp4").stat().st_size < 2 * 1024 * 1024
    import dvis_sdk
    pkg = Path(dvis_sdk.__file__).parent
    assert (pkg / "weights_manifest.json").is_file() and (pkg / "py.typed").is_file()
    assert list((pkg / "configs" / "official").rglob("*.yaml"))
