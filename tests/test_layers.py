"""The import-linter contracts in pyproject.toml catch a wrong arrow: a copy of the package with
one bad import added fails `lint-imports`, naming the contract it breaks.

By hand: copy src/ and pyproject.toml to a scratch directory, add e.g. ``import
taskstatus.store`` to src/taskstatus/model.py, and run ``PYTHONPATH=src lint-imports
--no-cache`` there: it exits 1 with the layers contract broken.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tmp_path: Path, module: str | None = None, line: str = "") -> tuple[int, str]:
    """Run lint-imports on a copy of the package, with `line` added to `module` (a path under
    src/taskstatus); its exit status and output."""
    shutil.copytree(ROOT / "src" / "taskstatus", tmp_path / "src" / "taskstatus")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    if module is not None:
        path = tmp_path / "src" / "taskstatus" / module
        path.write_text(path.read_text() + f"\n{line}\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src")}
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_the_unchanged_package_keeps_every_contract(tmp_path: Path) -> None:
    """The copy the other tests break passes as it is, so their failures are the bad import's."""
    code, output = lint_imports(tmp_path)
    assert code == 0, output
    assert "0 broken" in output


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("model.py", "import taskstatus.store", "layers"),
        ("store/rows.py", "import taskstatus.service", "layers"),
        ("service.py", "import taskstatus.api", "layers"),
        ("api/v2.py", "import taskstatus.store.base", "reach the store only through the service"),
        ("cli/tasks.py", "import taskstatus.store.sqlite", "only the store's factory"),
        ("api/v2.py", "import taskstatus.api.jira", "the dialects do not import each other"),
        ("store/rows.py", "import httpx", "the store knows nothing of HTTP"),
        ("model.py", "import jsonschema", "know nothing of I/O"),
    ],
)
def test_a_wrong_import_breaks_a_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    """Each bad arrow (a lower layer importing a higher one, an interface reaching the store
    or an adapter, one dialect importing another, the store importing HTTP, the model a
    validation library) makes lint-imports fail and name the contract."""
    code, output = lint_imports(tmp_path, module, line)
    assert code != 0, output
    broken = output.split("Broken contracts", 1)[-1]
    assert contract in " ".join(broken.split()), output
