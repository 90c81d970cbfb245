"""The Dockerfile: hadolint, its production settings, and the wheel its builder stage makes, installed
and run as the image would (no Docker engine here, so the image itself is not built)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.conftest import REPO_ROOT, tool

DOCKERFILE = REPO_ROOT / "Dockerfile"
# The builder stage's commands, verbatim; the wheel test runs the same ones with local paths.
BUILD_WHEEL = "pip wheel --no-deps --wheel-dir /wheels ."
MAKE_VENV = "python -m venv /opt/venv"
INSTALL_LOCK = "/opt/venv/bin/pip install --require-hashes --only-binary=:all: -r requirements.lock"
INSTALL_WHEEL = "/opt/venv/bin/pip install --no-deps /wheels/fanout-*.whl"
# What the builder stage copies from the build context.
CONTEXT = ["pyproject.toml", "README.md", "requirements.lock", "src"]
LOCK = REPO_ROOT / "requirements.lock"


def stages() -> list[str]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]


def test_hadolint_is_clean() -> None:
    """hadolint finds nothing in the Dockerfile."""
    result = subprocess.run(
        [tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_production_shape() -> None:
    """The image is pinned, multi-stage, non-root, and runs the worker with production settings."""
    text = DOCKERFILE.read_text()
    builder, runtime = stages()
    assert builder.startswith("${PYTHON_IMAGE} AS builder") and runtime.startswith(
        "${PYTHON_IMAGE} AS runtime"
    )
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base[1])
    for command in (BUILD_WHEEL, MAKE_VENV, INSTALL_LOCK, INSTALL_WHEEL):
        assert command in builder, f"builder stage no longer runs {command!r}: update this test with it"
    for path in CONTEXT:
        assert re.search(rf"^COPY .*\b{re.escape(path)}\b", builder, re.MULTILINE)
    # The runtime stage: no compiler, no build step, no source tree, no dev extras; a non-root user.
    assert not re.search(r"apt-get|gcc|build-essential|pip install|\[dev", runtime)
    assert "COPY --from=builder /opt/venv /opt/venv" in runtime
    user = re.search(r"^USER (\S+)$", runtime, re.MULTILINE)
    assert user and user[1].split(":")[0] not in ("root", "0")
    env = dict(re.findall(r"\b([A-Z_]+)=(\S+)", "".join(re.findall(r"^ENV (.*)$", runtime, re.MULTILINE))))
    assert {
        k: env.get(k)
        for k in ("FANOUT_ENV", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "FANOUT_METRICS_HOST")
    } == {
        "FANOUT_ENV": "production",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "FANOUT_METRICS_HOST": "0.0.0.0",
    }
    assert 'ENTRYPOINT ["fanout"]' in runtime and 'CMD ["worker"]' in runtime
    assert re.search(r"^HEALTHCHECK .*CMD .*http://127\.0\.0\.1:9400/healthz", runtime, re.MULTILINE)
    assert re.search(r"^STOPSIGNAL SIGTERM$", runtime, re.MULTILINE)
    assert re.search(r"^EXPOSE 9400$", runtime, re.MULTILINE)


def test_dockerignore_keeps_the_context_small() -> None:
    """The build context is only what the builder stage copies."""
    lines = (REPO_ROOT / ".dockerignore").read_text().split()
    assert lines[0] == "*" or "*" in lines  # everything out, then only what the build needs back in
    assert {"!pyproject.toml", "!README.md", "!requirements.lock", "!src/"} <= set(lines)


@pytest.mark.slow
def test_wheel_installs_and_runs_without_dev_extras(tmp_path: Path) -> None:
    """Build the wheel from exactly what the builder stage copies, install it into an empty venv, run it."""
    context = tmp_path / "context"
    context.mkdir()
    for name in CONTEXT:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, context / name)
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    started = time.monotonic()

    def run(*argv: str | Path, cwd: Path = context) -> str:
        done = subprocess.run([str(a) for a in argv], cwd=cwd, timeout=300, capture_output=True, text=True)
        assert done.returncode == 0, f"{argv[1:3]} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        return done.stdout

    # BUILD_WHEEL, MAKE_VENV, INSTALL_LOCK, INSTALL_WHEEL with local paths, through uv (the dev extra)
    # rather than pip: the same build backend, lock, hashes and binary-only rule, in seconds, not a minute.
    uv, python = tool("uv"), venv / "bin" / "python"
    run(uv, "build", "--quiet", "--wheel", "--out-dir", wheels, ".")
    [wheel] = wheels.glob("fanout-*.whl")
    run(uv, "venv", "--quiet", "--python", sys.executable, venv)
    pip = (uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", python)  # as pip does
    run(*pip, "--require-hashes", "--only-binary=:all:", "-r", "requirements.lock")
    run(*pip, "--no-deps", wheel)
    print(f"wheel built and installed in {time.monotonic() - started:.1f} s")
    run(uv, "pip", "check", "--python", python)  # the lock holds every dependency of every package

    installed = run(uv, "pip", "freeze", "--python", python).lower()
    for dev_only in ("pytest", "moto", "hypothesis", "mypy", "ruff", "secantusdb", "aws-cdk-lib"):
        assert f"\n{dev_only}==" not in f"\n{installed}", f"{dev_only} got into the runtime install"
    assert f"\nfanout @ {wheel.as_uri()}".lower() in f"\n{installed}", (
        installed
    )  # the wheel, not this checkout

    # Only what a container would have: no FANOUT_*/AWS_* settings, not the test venv's PATH.
    clean = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    helped = subprocess.run(
        ["fanout", "--help"], env=clean, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert helped.returncode == 0, helped.stderr
    assert "worker" in helped.stdout

    worker = subprocess.run(
        ["fanout", "worker"],
        env={**clean, "FANOUT_ENV": "production"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert worker.returncode != 0
    assert "Traceback" not in worker.stderr + worker.stdout
    assert re.search(
        r"^fanout: error: FANOUT_ENV=production needs FANOUT_QUEUE_URL, FANOUT_MONGO_URI",
        worker.stderr,
        re.MULTILINE,
    ), worker.stderr


def locked() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock: normalized name -> (pinned version, its hashes)."""
    text = re.sub(r"\s*\\\n\s*", " ", LOCK.read_text())
    pins: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)((?: --hash=sha256:[0-9a-f]{64})*)", line)
        assert match, f"not a hash-pinned requirement: {line!r}"
        hashes = re.findall(r"sha256:([0-9a-f]{64})", match[3])
        pins[canonicalize_name(match[1])] = (match[2], hashes)
    return pins


def test_lock_pins_every_runtime_dependency_with_hashes() -> None:
    """Each runtime requirement of pyproject.toml is pinned in requirements.lock at a version it allows, every
    pin has hashes, and no dev or deploy extra got in: `make lock` was run after the last change."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = locked()
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name][0]}, outside {requirement.specifier}: run `make lock`"
        )
    assert all(hashes for _, hashes in pins.values())
    for text in project["dependencies"]:  # what an extra pulls in (PyJWT[crypto]: cryptography) too
        requirement = Requirement(text)
        for extra in requirement.extras:
            for needed in map(Requirement, metadata.requires(requirement.name) or []):
                if needed.marker is not None and needed.marker.evaluate({"extra": extra}):
                    assert canonicalize_name(needed.name) in pins, (
                        f"{needed.name}, which {requirement.name}[{extra}] needs, is not in requirements.lock: "
                        "run `make lock`"
                    )
    extras = {
        canonicalize_name(Requirement(r).name)
        for group in project["optional-dependencies"].values()
        for r in group
    }
    direct = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    assert set() == (extras - direct) & set(pins), "a dev or deploy extra is in the runtime lock"
    assert "make lock" in LOCK.read_text().splitlines()[1]
