"""The catalog's TypeScript types: `fanout schema --typescript` reproduces the committed
clients/typescript/src/catalog.ts, tsc compiles it, and tsc refuses a wrong payload through the publisher."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import PACKAGE

#: One build of clients/typescript per run (`built_package` builds once under a lock; xdist group too).
pytestmark = pytest.mark.xdist_group("node")
COMMITTED = PACKAGE / "src" / "catalog.ts"


def _tsc(*args: str) -> subprocess.CompletedProcess[str]:
    tsc = PACKAGE / "node_modules" / "typescript" / "bin" / "tsc"
    return subprocess.run(
        ["node", str(tsc), *args], cwd=PACKAGE, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.timeout(300)  # the first run installs the pinned generator with npm
def test_the_committed_types_are_the_generated_ones(tmp_path: Path) -> None:
    """Regenerating from the Python models gives clients/typescript/src/catalog.ts byte for byte
    (if not: `fanout schema --typescript --out clients/typescript/src/catalog.ts`)."""
    out = tmp_path / "catalog.ts"
    result = subprocess.run(
        [sys.executable, "-m", "fanout", "schema", "--typescript", "--out", str(out)],
        env=os.environ, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert 0 == result.returncode, result.stderr
    assert COMMITTED.read_text() == out.read_text()
    assert "export interface CatalogPayloads" in out.read_text()


@pytest.mark.timeout(300)
def test_the_package_with_its_catalog_compiles(built_package: list[str]) -> None:
    """tsc type-checks src/ (catalog.ts included) under the package's strict settings, and emits it."""
    result = _tsc("-p", "tsconfig.json", "--noEmit")
    assert 0 == result.returncode, result.stdout + result.stderr


SNIPPET = """\
import type { CatalogEnvelope } from "PACKAGE/src/index.js";
import { BatchPublisher } from "PACKAGE/src/index.js";

declare const events: BatchPublisher;
const ids = { conversationId: "c9", messageId: "m1", senderId: "u2" };
void events.publish("chat.message", { userIds: ["u1"], payload: { ...ids, text: "hi", later: true } });
void events.publish("chat.unheard.of", { userIds: ["u1"], payload: { anything: 1 } });
void events.publish("chat.message", { userIds: ["u1"], payload: { text: "no ids" } }); // E
void events.publish("notification.unread.updated", { userIds: ["u1"], payload: { unreadCount: "3" } }); // E
void events.publish("chat.receipt.updated", { userIds: ["u1"], payload: { ...ids, userId: "u", state: "seen" } }); // E

export function preview(frame: CatalogEnvelope): string {
  if (frame.type === "chat.message") return frame.payload.conversationId;
  return frame.payload.conversationId; // E
}
"""


@pytest.mark.timeout(300)
def test_tsc_refuses_a_wrong_payload(built_package: list[str], tmp_path: Path) -> None:
    """With the default payload map, tsc flags a catalogued type's missing field, wrong field type and
    unknown state, and an envelope read without narrowing its type; other types take any object."""
    (tmp_path / "package.json").write_text('{"type": "module"}')  # an ES module, as the package is
    source = tmp_path / "service.ts"
    source.write_text(SNIPPET.replace("PACKAGE", PACKAGE.as_posix()))
    config = tmp_path / "tsconfig.json"
    config.write_text(
        json.dumps(
            {
                "extends": str(PACKAGE / "tsconfig.json"),
                "compilerOptions": {
                    "noEmit": True,
                    "rootDir": "/",
                    "typeRoots": [str(PACKAGE / "node_modules" / "@types")],
                },
                "files": [str(source)],
            }
        )
    )
    result = _tsc("-p", str(config))
    flagged = {int(m) for m in re.findall(r"service\.ts\((\d+),\d+\): error", result.stdout)}
    expected = {n for n, line in enumerate(SNIPPET.splitlines(), 1) if line.endswith("// E")}
    assert 4 == len(expected)
    assert expected == flagged, result.stdout + result.stderr
