"""Payload compatibility: the committed snapshot of every payload schema, and what may change in it.

Within a version only additive changes are allowed: a new optional field, or new wording in a
description. Anything else (a field removed, retyped, newly required or no longer required, a
constraint, default or enum changed, unknown fields refused) is a new version of the type
(docs/protocol.md section 11).

    python -m fanout.catalog.compat --update               # record new versions and additive changes
    python -m fanout.catalog.compat --update --retire T@V  # drop a version whose clients have moved

``--update`` refuses an incompatible change to a recorded version; ``tests/unit/catalog`` fails until
the snapshot holds every version and the models agree with it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fanout.catalog import SPECS
from fanout.catalog.export import payload_schema

SNAPSHOT = Path(__file__).with_name("schemas.snapshot.json")
#: Keys that document a schema without changing what it accepts.
_ANNOTATIONS = frozenset({"title", "description", "examples", "$comment"})
_COMBINATORS = ("anyOf", "oneOf", "allOf")


def current() -> dict[str, Any]:
    """Every catalogued payload version's JSON Schema, keyed ``type@version``."""
    return {spec.key: payload_schema(spec) for spec in sorted(SPECS, key=lambda s: s.key)}


def load(path: Path = SNAPSHOT) -> dict[str, Any]:
    """The committed snapshot."""
    snapshot: dict[str, Any] = json.loads(path.read_text())
    return snapshot


def problems(old: dict[str, Any], new: dict[str, Any], where: str = "payload") -> list[str]:
    """Why a payload valid under ``new`` could break a reader of ``old``, or the reverse; [] when
    ``new`` only adds to ``old``."""
    return _compare(old, new, old, new, where)


def check(snapshot: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Every way the catalog ``now`` departs from the snapshot: incompatible changes, versions missing
    from the catalog (retired without ``--retire``) and versions missing from the snapshot."""
    found = []
    for key, old in sorted(snapshot.items()):
        if key not in now:
            found.append(f"{key}: in the snapshot but not in the catalog")
        else:
            found += [f"{key}: {p}" for p in problems(old, now[key])]
    found += [f"{key}: not in the snapshot yet" for key in sorted(now.keys() - snapshot.keys())]
    return found


def _deref(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = {**root["$defs"][name], **{k: v for k, v in schema.items() if k != "$ref"}}
    return {k: v for k, v in schema.items() if k not in _ANNOTATIONS and k != "$defs"}


def _compare(
    old: dict[str, Any], new: dict[str, Any], old_root: dict[str, Any], new_root: dict[str, Any], where: str
) -> list[str]:
    old, new = _deref(old, old_root), _deref(new, new_root)
    found: list[str] = []
    if "properties" in old or "properties" in new:
        found += _object(old, new, old_root, new_root, where)
        old = {k: v for k, v in old.items() if k not in ("properties", "required", "additionalProperties")}
        new = {k: v for k, v in new.items() if k not in ("properties", "required", "additionalProperties")}
    for key in sorted(old.keys() | new.keys()):
        if key not in new:
            found.append(f"{where}: {key} {old[key]!r} dropped")
        elif key not in old:
            found.append(f"{where}: {key} {new[key]!r} added")
        elif key == "items" and isinstance(old[key], dict) and isinstance(new[key], dict):
            found += _compare(old[key], new[key], old_root, new_root, f"{where}[]")
        elif key in _COMBINATORS and len(old[key]) == len(new[key]):
            for a, b in zip(old[key], new[key], strict=True):
                found += _compare(a, b, old_root, new_root, where)
        elif old[key] != new[key]:
            found.append(f"{where}: {key} changed from {old[key]!r} to {new[key]!r}")
    return found


def _object(
    old: dict[str, Any], new: dict[str, Any], old_root: dict[str, Any], new_root: dict[str, Any], where: str
) -> list[str]:
    found = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
    found += [f"{where}.{f}: newly required" for f in sorted(new_required - old_required)]
    found += [f"{where}.{f}: no longer required" for f in sorted(old_required - new_required)]
    if old.get("additionalProperties", True) is not False and new.get("additionalProperties", True) is False:
        found.append(f"{where}: unknown fields are refused")
    for name, schema in old_props.items():
        if name not in new_props:
            found.append(f"{where}.{name}: removed")
        else:
            found += _compare(schema, new_props[name], old_root, new_root, f"{where}.{name}")
    return found


def update(retire: Sequence[str] = (), path: Path = SNAPSHOT) -> list[str]:
    """Write the catalog's schemas to the snapshot unless a recorded version changed incompatibly or
    vanished without ``retire``; returns the refusals (nothing is written when there are any)."""
    snapshot = load(path) if path.exists() else {}
    now = current()
    refused = [p for p in check(snapshot, now) if not p.endswith("not in the snapshot yet")]
    refused = [p for p in refused if not (p.endswith("but not in the catalog") and p.split(":")[0] in retire)]
    if not refused:
        path.write_text(json.dumps(now, indent=2, sort_keys=True) + "\n")
    return refused


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fanout.catalog.compat", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--update", action="store_true", help="write the snapshot (additive changes only)")
    parser.add_argument("--retire", action="append", default=[], metavar="TYPE@V", help="drop a version")
    args = parser.parse_args(argv)
    if args.update:
        refused = update(args.retire)
        for line in refused:
            print(f"refused: {line}", file=sys.stderr)
        if refused:
            print("an incompatible change needs a new version of the type (docs/protocol.md section 11)")
        return 1 if refused else 0
    found = check(load(), current())
    print("\n".join(found) or "the catalog matches the snapshot")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
