"""The README's commands and CI agree, and the package ships what it needs at run time."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_starts_with_two_commands_and_ci_runs_the_test_one():
    cmds = _readme_commands()
    text = (ROOT / "README.md").read_text()
    assert text.index("```bash") < text.index("\n## "), "the two commands come first"
    assert len(cmds) >= 2
    setup_run, tests = cmds[0], cmds[1]
    assert ".venv" in setup_run and 'pip install -q -e ".[dev]"' in setup_run and "dvis predict" in setup_run
    assert "pytest" in tests and "import torchvision, timm" in tests
    assert tests in (ROOT / ".ci" / "run").read_text()


def test_example_video_and_package_data_exist():
    assert (ROOT / "examples" / "data" / "shapes.mp4").stat().st_size < 2 * 1024 * 1024
    import dvis_sdk
    pkg = Path(dvis_sdk.__file__).parent
    assert (pkg / "weights_manifest.json").is_file()
    assert list((pkg / "configs" / "official").rglob("*.yaml"))
