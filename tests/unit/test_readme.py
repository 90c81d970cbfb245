"""The README and the docs beside it stay true to the code and to each other."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from fanout.cli import _parser
from fanout.config import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCS += [ROOT / "deploy" / "README.md", ROOT / "bench" / "README.md"]
SOURCES = sorted((ROOT / "src" / "fanout").rglob("*.py"))
ATTRIBUTES = ROOT / "src" / "fanout" / "attributes.py"  # the one home of the worker's message attributes

_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text())
    return {_slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def _source_strings(pattern: str) -> set[str]:
    found: set[str] = set()
    for path in SOURCES:
        found.update(re.findall(pattern, path.read_text(), re.MULTILINE))
    return found


def test_every_setting_is_documented() -> None:
    """Each Settings field appears as its FANOUT_ variable in docs/configuration.md, and every variable the
    README's short table names is a real setting."""
    configuration = (ROOT / "docs" / "configuration.md").read_text()
    missing = [name for name in Settings.model_fields if f"FANOUT_{name.upper()}" not in configuration]
    assert [] == missing
    named = set(re.findall(r"`FANOUT_([A-Z0-9_]+)`", README))
    assert named
    assert set() == {n for n in named if n.lower() not in Settings.model_fields}


def test_every_command_is_documented() -> None:
    """Each `fanout` subcommand appears in the README's command table."""
    [commands] = [a for a in _parser()._actions if a.dest == "command"]
    names = list(commands.choices or ())
    assert names
    assert [] == [name for name in names if f"`fanout {name}" not in README]


def test_ci_runs_lint_then_test_as_the_readme_says() -> None:
    """.ci/run runs `make lint` then `make test` and nothing else, and the README says so."""
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line for line in script if line.startswith("make ")]
    assert ["make lint", "make test"] == commands
    assert "`.ci/run`" in README and "`make lint`, then `make test`" in README


def test_readme_is_a_short_page() -> None:
    """The README stays a newcomer's page of at most about 250 lines; reference material lives in docs/."""
    assert len(README.splitlines()) <= 250


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_inside_the_repository_and_resolve(doc: Path) -> None:
    """Every relative link names a file of this repository and, with #anchor, one of its headings."""
    text = _FENCE.sub("", doc.read_text())
    assert "shared/DESIGN.md" not in text
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        inside = path.is_relative_to(ROOT) and path.exists()
        if not inside or (anchor and path.suffix == ".md" and anchor not in _anchors(path)):
            broken.append(target)
    assert [] == broken


def test_protocol_names_every_invalid_body_reason() -> None:
    """Each reason the body parser gives an invalid message is in docs/protocol.md's reasons table."""
    reasons = _source_strings(r'InvalidMessage\(\s*"([a-z_]+)"')
    assert {"not_json", "schema", "unknown_version"} <= reasons
    assert [] == sorted(r for r in reasons if f"| `{r}` |" not in PROTOCOL)


def test_protocol_names_every_worker_message_attribute() -> None:
    """Each SQS message attribute the worker defines is in docs/protocol.md's attributes table."""
    attributes = set(re.findall(r'^[A-Z_]+\s*=\s*"(fanout-[a-z-]+)"', ATTRIBUTES.read_text(), re.MULTILINE))
    assert {"fanout-reason", "fanout-connections"} <= attributes
    assert [] == sorted(a for a in attributes if f"| `{a}` |" not in PROTOCOL)


_LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
#: How the docs' log event names end (and few other names do): each such name must be one the code logs.
_EVENT_SHAPE = re.compile(
    r"_(failed|died|stalled|killed|unavailable|unreachable|timed_out|changed|started|stopped|stop|done"
    r"|summary|unsent|refused)$"
)


def _logged_events() -> set[str]:
    """Every event name the code logs: the first argument of ``log.info(...)`` and its kin."""
    found: set[str] = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
                continue
            func = node.func  # also `(log.debug if plain else log.info)("event_done", ...)`
            funcs = [func.body, func.orelse] if isinstance(func, ast.IfExp) else [func]
            if all(isinstance(f, ast.Attribute) and f.attr in _LEVELS for f in funcs):
                found.add(str(node.args[0].value))
    return found


def test_log_events_the_runbooks_name_are_logged() -> None:
    """An on-call engineer searches the logs for the event names docs/operations.md and deploy/README.md
    give (`handle_failed`, `relay_failed`, `readiness_changed` ...): each is an event the code logs."""
    logged = _logged_events()
    assert {"event_done", "route_failed", "worker_process_died"} <= logged
    for doc in (ROOT / "docs" / "operations.md", ROOT / "deploy" / "README.md"):
        named = set(re.findall(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+)+)`", doc.read_text()))
        events = {name for name in named if _EVENT_SHAPE.search(name)}
        assert len(events) > (10 if doc.parent.name == "docs" else 0), doc
        assert set() == events - logged, doc.name
