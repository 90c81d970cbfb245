"""The TypeScript package built once per session, for the tests that drive it with Node."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "typescript"


@pytest.fixture(scope="session")
def built_package() -> list[str]:
    """`npm ci` and `tsc` as a developer runs them; returns the compiled Node test files."""
    for tool in ("node", "npm"):
        assert shutil.which(tool), (
            f"{tool} is required to test clients/typescript (install Node.js 20 or later)"
        )
    for args in (["npm", "ci", "--no-audit", "--no-fund"], ["npm", "run", "build:test"]):
        result = subprocess.run(args, cwd=PACKAGE, capture_output=True, text=True, timeout=240, check=False)
        assert 0 == result.returncode, (
            f"{' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    files = sorted(str(p.relative_to(PACKAGE)) for p in (PACKAGE / "dist-test" / "test").glob("*.test.js"))
    assert files, "tsc wrote no test files to dist-test/test/"
    return files
