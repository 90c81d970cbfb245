"""clients/browser/fanout.js outside a browser: its server-free rules under Node's test runner, and its
types (fanout.d.ts, from the generated catalog) checked by `tsc` on a small web-app consumer and on
mistakes they must refuse. The browser itself is tests/browser's."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fanout.catalog import CURRENT
from fanout.publish.direct import build_event
from tests.integration.conftest import PACKAGE

#: One build of clients/typescript per run (`built_package` builds once under a lock; xdist group too).
pytestmark = pytest.mark.xdist_group("node")

BROWSER = PACKAGE.parent / "browser"
TSC = PACKAGE / "node_modules" / ".bin" / "tsc"


def _tsc(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TSC), "-p", str(project)], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_client_rules_hold_under_node() -> None:
    """Backoff with full jitter, bounded dedupe by id, per-key order with held gaps, and ticket URLs pass
    their Node tests."""
    assert shutil.which("node"), "node is required to test clients/browser (install Node.js 20 or later)"
    result = subprocess.run(
        ["node", "--test", "test/"], cwd=BROWSER, capture_output=True, text=True, timeout=60, check=False
    )
    assert 0 == result.returncode, result.stdout[-4000:] + result.stderr[-2000:]
    passed = re.search(r"^# pass (\d+)$", result.stdout, re.M)
    assert passed is not None and int(passed.group(1)) >= 9


def test_the_live_counters_of_fanout_js_are_the_catalogs() -> None:
    """fanout.js's LIVE_COUNTERS (a skipped seq of theirs is no gap) are the catalog's latest-only types,
    the ones the worker conflates and the reference client and resume treat the same way."""
    script = "import('./fanout.js').then((m) => console.log(JSON.stringify([...m.LIVE_COUNTERS])))"
    result = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        cwd=BROWSER, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert 0 == result.returncode, result.stderr[-2000:]
    expected = sorted(t for t, spec in CURRENT.items() if spec.policy.latest_only)
    assert expected == sorted(json.loads(result.stdout))


def test_a_web_app_consumer_compiles_against_the_catalog_types(built_package: list[str]) -> None:
    """A TypeScript consumer of fanout.js (subscribers narrowed by event type, a ticket URL builder, the
    connection id for excludeConnectionIds) compiles with the package's tsc."""
    result = _tsc(BROWSER / "tsconfig.json")
    assert 0 == result.returncode, result.stdout[-4000:]


def test_the_types_refuse_mistakes(built_package: list[str], tmp_path: Path) -> None:
    """tsc reports an error on each line of test/wrong.ts marked `error` (an unknown payload field, a
    misspelt type, a wrong field type, a URL where a builder is due), and on no other line."""
    wrong = BROWSER / "test" / "wrong.ts"
    project = tmp_path / "tsconfig.json"
    project.write_text(json.dumps({"extends": str(BROWSER / "tsconfig.json"), "files": [str(wrong)]}))
    result = _tsc(project)
    marked = {n for n, line in enumerate(wrong.read_text().splitlines(), 1) if "// error" in line}
    reported = {int(n) for n in re.findall(r"wrong\.ts\((\d+),\d+\): error", result.stdout)}
    assert len(marked) >= 5
    assert marked == reported, result.stdout[-4000:]


def test_a_frame_the_worker_posts_is_a_client_envelope(built_package: list[str], tmp_path: Path) -> None:
    """The frame the worker posts for an ordered event of payload version 2 (seq, key, payloadVersion:
    protocol section 7) type-checks as the package's ClientEnvelope, with no field left undeclared."""
    body = build_event(
        "notification.custom", user_ids=["u1"], ordering_key="user:u1", seq=3,
        meta={"payloadVersion": 2}, payload={"title": "hi"},
    )  # fmt: skip
    frame = body.client_frame.decode()
    assert {"seq", "key", "payloadVersion"} <= set(json.loads(frame))
    source = tmp_path / "frame.ts"
    source.write_text(
        f'import type {{ ClientEnvelope }} from "{PACKAGE / "src" / "types.js"}";\n'
        f"const frame: ClientEnvelope = {frame};\n"
        "const key: string | undefined = frame.key;\n"
        "const version: number | undefined = frame.payloadVersion;\n"
        "console.log(key, version);\n"
    )
    project = tmp_path / "tsconfig.json"
    project.write_text(json.dumps({"extends": str(BROWSER / "tsconfig.json"), "files": [str(source)]}))
    result = _tsc(project)
    assert 0 == result.returncode, result.stdout[-4000:]
