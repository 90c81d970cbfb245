"""The package's layout: production code never imports the local stack."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "fanout"
#: Dev-only packages: they may import anything; nothing outside them may import the local stack.
DEV_ONLY = ("local", "bench")
#: CLI commands that run the local stack; only these functions of the cli package may import it.
CLI_DEV_COMMANDS = frozenset({"run_dev", "run_gateway", "run_bench"})


def _imports(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [(f"{node.module}.{alias.name}", node) for alias in node.names]
    return found


def _local(name: str) -> bool:
    return name.startswith("fanout.local") or name == "fanout.local"


def test_no_production_module_imports_the_local_stack() -> None:
    """Outside fanout.local and fanout.bench, no module imports fanout.local (the CLI only in dev commands)."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] in DEV_ONLY:
            continue
        tree = ast.parse(path.read_text())
        allowed: set[int] = set()
        if rel.parts[0] == "cli":
            for fn in ast.walk(tree):
                if isinstance(fn, ast.FunctionDef) and fn.name in CLI_DEV_COMMANDS:
                    allowed |= {id(n) for n in ast.walk(fn)}
        offenders += [
            f"{rel}: {name}" for name, node in _imports(tree) if _local(name) and id(node) not in allowed
        ]
    assert [] == offenders


def test_production_entry_points_load_no_local_code() -> None:
    """Importing the worker, the pool, the lifecycle handler and the CLI loads nothing of fanout.local."""
    code = (
        "import sys, fanout.cli, fanout.worker.consumer, fanout.worker.pool, fanout.lifecycle, fanout.publish;"
        "print(sorted(m for m in sys.modules if m.startswith(('fanout.local', 'fanout.bench', 'moto', 'secantus'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "[]" == out.strip()


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The import scan finds `from fanout.local.stack import X` and `import fanout.local` alike."""
    tree = ast.parse("from fanout.local.stack import LocalStack\nimport fanout.local\nimport fanout.store\n")
    assert ["fanout.local.stack.LocalStack", "fanout.local"] == [n for n, _ in _imports(tree) if _local(n)]


def test_the_package_root_loads_its_names_on_first_use() -> None:
    """``import fanout`` and the CLI load no AWS or HTTP client library; each public name still resolves."""
    code = (
        "import sys, fanout, fanout.cli;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'aiobotocore', 'aiohttp', 'boto3', 'botocore'}));"
        "from fanout import *; from fanout.publish import Publisher;"
        "print(fanout.Publisher is Publisher, all(getattr(fanout, n) for n in fanout.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert ["[]", "True True"] == out.split("\n")[:2]


def test_the_stacks_moto_script_imports_nothing_of_fanout() -> None:
    """moto's server runs by path for a quick start (``moto_argv``): it must not need the fanout package."""
    tree = ast.parse((SRC / "local" / "motoserver.py").read_text())
    assert [] == [name for name, _ in _imports(tree) if name.split(".")[0] == "fanout"]


def test_the_local_stack_loads_no_http_client_library() -> None:
    """``fanout dev`` reaches its first child sooner: the stack module needs neither aiohttp nor aiobotocore
    (the worker pool's ``die_with_parent`` lives apart from the pool for this)."""
    code = (
        "import sys, fanout.local.stack;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'aiobotocore', 'aiohttp'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "[]" == out.strip()
