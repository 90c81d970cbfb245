"""clients/browser/fanout.js outside a browser: its server-free rules under Node's test runner, and its
types (fanout.d.ts, from the generated catalog) checked by `tsc` on a small web-app consumer and on
mistakes they must refuse. The browser itself is tests/browser's."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from fanout.catalog import CURRENT
from fanout.publish.direct import build_event
from tests.integration.conftest import PACKAGE

#: One build of clients/typescript per run (`built_package` builds once under a lock; xdist group too).
pytestmark = pytest.mark.xdist_group("node")

BROWSER = PACKAGE.parent / "browser"
TSC = PACKAGE / "node_modules" / ".bin" / "tsc"
CONSUMER = BROWSER / "test" / "consumer.ts"
WRONG = BROWSER / "test" / "wrong.ts"
DIAGNOSTIC = re.compile(r"^(.+?)\((\d+),\d+\): error TS\d+: ")


@dataclass
class Checked:
    """What one `tsc` run over every file these tests type-check reported."""

    sources: set[Path]  # the files given to tsc, one per test
    files: set[Path]  # the files of the program (--listFiles): the sources and what they import
    errors: dict[Path, set[int]]  # the lines with an error, by file
    unplaced: list[str]  # output naming no file: a broken config or a crashed tsc
    output: str
    frame: str  # the worker's frame, which frame_source assigns to a ClientEnvelope
    frame_source: Path

    def clean(self, source: Path, *imported: Path) -> bool:
        """tsc read ``source`` and ``imported``, and reported no error but in the other sources."""
        others = self.sources - {source}
        return {source, *imported} <= self.files and not self.unplaced and set(self.errors) <= others


@pytest.fixture(scope="module")
def checked(built_package: list[str], tmp_path_factory: pytest.TempPathFactory) -> Checked:
    """The web-app consumer, the mistakes and a frame the worker posts, type-checked by one `tsc` run
    under fanout.js's tsconfig.json: fanout.d.ts and the DOM library are compiled once, not once per
    test. Each file is an ES module, so none sees another's names."""
    tmp = tmp_path_factory.mktemp("tsc")
    body = build_event(
        "notification.custom", user_ids=["u1"], ordering_key="user:u1", seq=3,
        meta={"payloadVersion": 2}, payload={"title": "hi"},
    )  # fmt: skip
    frame = body.client_frame.decode()
    source = tmp / "frame.ts"
    source.write_text(
        f'import type {{ ClientEnvelope }} from "{PACKAGE / "src" / "types.js"}";\n'
        f"const frame: ClientEnvelope = {frame};\n"
        "const key: string | undefined = frame.key;\n"
        "const version: number | undefined = frame.payloadVersion;\n"
        "console.log(key, version);\n"
    )
    project = tmp / "tsconfig.json"
    files = [str(CONSUMER), str(WRONG), str(source)]
    project.write_text(json.dumps({"extends": str(BROWSER / "tsconfig.json"), "files": files}))
    result = subprocess.run(
        [str(TSC), "-p", str(project), "--listFiles", "--pretty", "false"],
        cwd=tmp, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    listed: set[Path] = set()
    errors: dict[Path, set[int]] = {}
    unplaced = result.stderr.splitlines()
    for line in result.stdout.splitlines():
        if found := DIAGNOSTIC.match(line):  # paths relative to the working directory
            errors.setdefault((tmp / found[1]).resolve(), set()).add(int(found[2]))
        elif line.startswith("/") and Path(line).is_file():
            listed.add(Path(line).resolve())
        elif line.strip() and not line.startswith(" "):  # indented: a diagnostic's further lines
            unplaced.append(line)
    sources = {CONSUMER, WRONG, source.resolve()}
    output = result.stdout + result.stderr
    return Checked(sources, listed, errors, unplaced, output, frame, source.resolve())


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


def test_a_web_app_consumer_compiles_against_the_catalog_types(checked: Checked) -> None:
    """A TypeScript consumer of fanout.js (subscribers narrowed by event type, a ticket URL builder, the
    connection id for excludeConnectionIds) compiles with the package's tsc."""
    assert checked.clean(CONSUMER, BROWSER / "fanout.d.ts"), checked.output[-4000:]


def test_the_types_refuse_mistakes(checked: Checked) -> None:
    """tsc reports an error on each line of test/wrong.ts marked `error` (an unknown payload field, a
    misspelt type, a wrong field type, a URL where a builder is due), and on no other line."""
    marked = {n for n, line in enumerate(WRONG.read_text().splitlines(), 1) if "// error" in line}
    assert len(marked) >= 5
    assert WRONG in checked.files and not checked.unplaced, checked.output[-4000:]
    assert marked == checked.errors.get(WRONG, set()), checked.output[-4000:]


def test_a_frame_the_worker_posts_is_a_client_envelope(checked: Checked) -> None:
    """The frame the worker posts for an ordered event of payload version 2 (seq, key, payloadVersion:
    protocol section 7) type-checks as the package's ClientEnvelope, with no field left undeclared."""
    assert {"seq", "key", "payloadVersion"} <= set(json.loads(checked.frame))
    assert checked.clean(checked.frame_source, PACKAGE / "src" / "types.ts"), checked.output[-4000:]
