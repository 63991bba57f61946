"""The release as a user gets it: build the sdist and the wheel (the wheel from the sdist, as `python -m build`
does), check what the wheel holds, install it into a fresh virtual environment with no checkout on the path and run
the command line from there.

The fresh environment reuses the test environment's third-party packages (torch, OpenCV, ...) through a plain path
entry instead of downloading them again; a path entry does not run the `.pth` hooks there, so the editable install
of the checkout stays invisible, and the test asserts that `dvis_sdk` is imported from the installed wheel.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dvis_sdk"
EXAMPLE = ROOT / "examples" / "data" / "shapes.mp4"
# The embedded models dominate (about 24 MB of float32 weights); code and yamls add < 1 MB compressed. A wheel
# past this is carrying something it should not (test data, a stray checkpoint).
MAX_WHEEL_MB = 40
# Copied to build from: what the sdist is made of (the rest of the checkout is not needed, and the build writes
# *.egg-info next to pyproject.toml, which must not land in the checkout).
SDIST_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in", "dvis_sdk")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")

pytestmark = pytest.mark.slow


def _run(cmd, cwd, env=None, timeout=600):
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _source_files():
    """Every file of the package's source tree, as a wheel names it (``dvis_sdk/...``)."""
    return {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def _version():
    namespace: dict = {}
    exec((PACKAGE / "_version.py").read_text(), namespace)
    return namespace["__version__"]


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """(wheel, sdist) built from a copy of the sources."""
    if importlib.util.find_spec("build") is None:  # fail, not skip: CI must not pass without building
        pytest.fail("the wheel test needs the `build` package: pip install -e '.[dev]'")
    tmp = tmp_path_factory.mktemp("release")
    src = tmp / "src"
    for name in SDIST_SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=IGNORED)
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(path, src / name)
    _run([sys.executable, "-m", "build", "--outdir", tmp / "dist", src], cwd=tmp)
    wheels, sdists = list((tmp / "dist").glob("*.whl")), list((tmp / "dist").glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list((tmp / "dist").iterdir())
    return wheels[0], sdists[0]


def test_wheel_holds_every_package_file_and_nothing_else(dist):
    wheel, sdist = dist
    version = _version()
    assert wheel.name == f"dvis_sdk-{version}-py3-none-any.whl"
    size_mb = wheel.stat().st_size / 2**20
    assert size_mb < MAX_WHEEL_MB, f"wheel is {size_mb:.1f} MB"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"dvis_sdk-{version}.dist-info"
        metadata = zf.read(f"{info}/METADATA").decode()
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    in_package = {n for n in names if n.startswith("dvis_sdk/")}
    expected = _source_files()
    assert not expected - in_package, f"missing from the wheel: {sorted(expected - in_package)}"
    assert not in_package - expected, f"in the wheel but not in the source tree: {sorted(in_package - expected)}"
    assert names - in_package == {n for n in names if n.startswith(info + "/")}, "files outside the package"
    # the data a user needs at run time, named explicitly as well (a rename must not silently drop them)
    for needed in ("dvis_sdk/weights_manifest.json", "dvis_sdk/py.typed",
                   "dvis_sdk/weights/dvis-tiny-shapes/model.safetensors",
                   "dvis_sdk/weights/dvis-tiny-shapes-offline/model.safetensors",
                   "dvis_sdk/configs/official/dvis_plus/dvis_Plus/ovis/DVIS_Plus_Online_R50_16wIter.yaml"):
        assert needed in names, needed
    assert len([n for n in names if n.endswith(".yaml")]) == len(list(PACKAGE.rglob("*.yaml")))
    assert f"Version: {version}" in metadata and "License-Expression: MIT" in metadata
    assert "Project-URL:" in metadata and "Classifier: Typing :: Typed" in metadata
    assert "dvis = dvis_sdk.cli:entry" in entry_points

    with tarfile.open(sdist) as tf:
        sdist_names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for name in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"):
        assert name in sdist_names, name
    assert not expected - sdist_names, f"missing from the sdist: {sorted(expected - sdist_names)}"


@pytest.fixture(scope="module")
def fresh_env(dist, tmp_path_factory):
    """A new virtual environment with the wheel installed; the test environment's site-packages on its path."""
    wheel, _ = dist
    venv = tmp_path_factory.mktemp("venv") / "fresh"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv.parent)
    py = venv / "bin" / "python"
    purelib = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=venv).strip())
    # the directories this interpreter imports third-party packages from; never the checkout
    deps = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]
    deps = deps or [sysconfig.get_paths()["purelib"]]
    assert not any(Path(p).resolve() == ROOT for p in deps)
    (purelib / "test_env_deps.pth").write_text("\n".join(deps) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))}
    env["OMP_NUM_THREADS"] = "1"
    _run([py, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "--quiet", wheel],
         cwd=venv, env=env)
    work = tmp_path_factory.mktemp("work")  # no checkout here: only the example clip
    shutil.copy2(EXAMPLE, work / "shapes.mp4")
    return venv, env, work


def test_installed_wheel_imports_from_itself(fresh_env):
    venv, env, work = fresh_env
    code = ("import dvis_sdk; from dvis_sdk import VideoSegmenter; "
            "from dvis_sdk.official import load_official_config; "
            "cfg = load_official_config('ovis/DVIS_Plus_Online_R50_16wIter.yaml'); "  # a shipped yaml + _BASE_ chain
            "print(dvis_sdk.__file__); print(dvis_sdk.__version__); print(cfg.mode)")
    file, version, mode = _run([venv / "bin" / "python", "-c", code], cwd=work, env=env).split()
    assert Path(file).resolve().is_relative_to(venv.resolve()), file
    assert version == _version() and mode == "online"


def test_installed_wheel_runs_the_command_line(fresh_env):
    venv, env, work = fresh_env
    dvis = venv / "bin" / "dvis"
    models = _run([dvis, "models"], cwd=work, env=env)
    assert "dvis-tiny-shapes" in models and "dvis++-r50-ovis-online" in models
    for model in ("dvis-tiny-shapes", "dvis-tiny-shapes-offline"):
        out = work / model
        _run([dvis, "predict", "shapes.mp4", "--model", model, "--out", out, "--max-frames", "16", "--quiet"],
             cwd=work, env=env)
        doc = json.loads((out / "results.json").read_text())
        assert doc["num_frames"] == 16 and doc["class_names"] == ["circle", "square", "triangle"], model
        labels = {r["category_id"] for r in doc["instances"] if r["score"] > 0.5}
        assert len(labels) >= 2, (model, doc["instances"][:3])  # the clip holds circles, squares and triangles
