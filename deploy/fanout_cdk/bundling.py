"""The lifecycle Lambda's code, bundled at synth time without Docker.

Local bundling installs the runtime dependencies pinned with hashes in ``requirements.lock`` (the image's
lock) for the Lambda's platform (``uv pip install --python-platform *-manylinux_2_17 --only-binary
:all: --python-version 3.11 --require-hashes --compile-bytecode``), then the ``fanout`` package built
from this repository without dependencies, into the asset folder: the same source and the same
dependency files as the worker image, and no Docker engine. uv rather than pip: 4.5 s against 16 s for
the same files on the 2-core test machine (2026-11-30); bytecode is compiled as pip does, so the
Lambda's read-only file system need not hold sources it compiles at every cold start.
The lock lists the hash of every file PyPI has for each pinned version (``uv pip compile
--generate-hashes``), the manylinux wheels of both architectures included, so one lock serves the image
and the Lambda. The asset's hash is the hash of what goes into it (``src/fanout``, ``pyproject.toml``, the
lock, the platform), so an unchanged source is not bundled again into the same output.
With ``FANOUT_LAMBDA_BUNDLE_CACHE`` set to a folder, a bundle is also kept there by hash and copied from it
(the tests bundle once per session this way), as hard links where the two folders share a file system:
a bundle is about 100 MB in 4,600 files, which took 5 to 7 s to copy on the 2-core test machine, and
nothing writes into a bundle's files once it is made.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from uv import find_uv_bin

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON_VERSION = "3.11"
PLATFORMS = {"x86_64": "x86_64-manylinux_2_17", "arm64": "aarch64-manylinux_2_17"}  # manylinux2014
CACHE_ENV = "FANOUT_LAMBDA_BUNDLE_CACHE"
LOCK = REPO_ROOT / "requirements.lock"
_BUNDLER_VERSION = "3"  # bump when the bundle's recipe changes, so old bundles are not reused


class BundlingError(RuntimeError):
    """uv could not build or install the Lambda's code; its output says why."""


def source_hash(architecture: str) -> str:
    """The hash of everything the bundle is made from."""
    digest = hashlib.sha256(f"{_BUNDLER_VERSION}|{PYTHON_VERSION}|{PLATFORMS[architecture]}".encode())
    files = [REPO_ROOT / "pyproject.toml", LOCK, *sorted((REPO_ROOT / "src" / "fanout").rglob("*"))]
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def bundle(out: Path, architecture: str) -> None:
    """Fill ``out`` with the fanout package and its runtime dependencies for the Lambda's platform."""
    cache_root = os.environ.get(CACHE_ENV)
    cached = Path(cache_root) / source_hash(architecture) if cache_root else None
    if cached is not None and cached.is_dir():
        _copy(cached, out)
        return
    target = ["--target", str(out), "--python-platform", PLATFORMS[architecture]]
    target += ["--python-version", PYTHON_VERSION, "--compile-bytecode"]
    _uv("pip", "install", *target, "--only-binary", ":all:", "--require-hashes", "-r", str(LOCK))
    with tempfile.TemporaryDirectory(prefix="fanout-wheel-") as wheels:
        # Built afresh each time: uv reuses its build of a folder whose pyproject.toml is unchanged.
        _uv("build", "--wheel", "--out-dir", wheels, str(REPO_ROOT))
        [wheel] = Path(wheels).glob("fanout-*.whl")
        _uv("pip", "install", *target, "--no-deps", str(wheel))
    (out / ".lock").unlink(missing_ok=True)  # uv's lock on the target folder, not code
    shutil.rmtree(out / "bin", ignore_errors=True)  # console scripts pointing at this machine's interpreter
    if cached is not None:
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=cached.parent))
        _copy(out, partial)
        partial.rename(cached)  # atomic: a concurrent reader sees a whole bundle or none


def _copy(src: Path, dst: Path) -> None:
    """Copy the folder ``src`` into ``dst``, each file as a hard link where it can be one."""
    shutil.copytree(src, dst, copy_function=_link_or_copy, dirs_exist_ok=True)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(src, dst)


def _uv(*args: str) -> None:
    result = subprocess.run([find_uv_bin(), *args, "--quiet"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BundlingError(f"uv {args[0]} {args[1]} failed:\n{result.stdout}{result.stderr}")


@jsii.implements(ILocalBundling)
class _LocalBundling:
    def __init__(self, architecture: str) -> None:
        self._architecture = architecture

    def try_bundle(self, output_dir: str, options: Any) -> bool:  # options: the BundlingOptions
        bundle(Path(output_dir), self._architecture)
        return True  # never fall back to Docker: a failure raises with pip's own message


def lifecycle_code(architecture: str) -> lambda_.Code:
    """The lifecycle Lambda's code asset, bundled locally for ``architecture``."""
    return lambda_.Code.from_asset(
        str(REPO_ROOT / "src"),
        asset_hash=source_hash(architecture),
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(
            image=lambda_.Runtime.PYTHON_3_11.bundling_image,  # required by the API, never run
            local=_LocalBundling(architecture),
        ),
    )
