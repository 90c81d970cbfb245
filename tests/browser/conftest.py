"""Headless Chromium on the demo page of a real `fanout dev`: Debian's chromium, driven by Playwright's
Python package through ``executable_path`` (never ``playwright install``, which downloads a browser).

The set-up installs the browser with apt when /usr/bin/chromium is missing (as root, or through a
password-less sudo), and fails with a clear message when it cannot: a browser test that cannot run is a
failure, not a skip. The stack starts in a thread while the browser installs and launches."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, sync_playwright

from tests.conftest import Stack, stack_env, start_stack, stop_stack_later

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
#: Short timings so a test waits seconds: the typing stop after 2 s, offline 1 s after the last tab.
DEMO_ENV = {"FANOUT_TYPING_TIMEOUT_S": "2", "FANOUT_PRESENCE_GRACE_S": "1", "FANOUT_CONFLATE_MS": "300"}


def _apt(sudo: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Wait for another apt (a helper, unattended-upgrades) rather than fail on its lock.
    argv = [*sudo, "apt-get", "-o", "DPkg::Lock::Timeout=120", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=280, check=False)


def install_chromium() -> None:
    """Make sure /usr/bin/chromium exists: `apt-get install chromium` as root (or through sudo without a
    password), after an update if needed. Quick and a no-op when it is already there."""
    if CHROMIUM.exists():
        return
    how = "apt-get install -y --no-install-recommends chromium"
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    can_sudo = not sudo or (
        shutil.which("sudo") is not None
        and subprocess.run([*sudo, "true"], capture_output=True, timeout=10, check=False).returncode == 0
    )
    if shutil.which("apt-get") is None or not can_sudo:
        pytest.fail(
            f"the browser test needs Debian's chromium at {CHROMIUM}: run `{how}` as root", pytrace=False
        )
    install = ("install", "-y", "--no-install-recommends", "chromium")
    result = _apt(sudo, *install)
    if result.returncode != 0:  # an old or missing package list: update it once, then try again
        _apt(sudo, "update")
        result = _apt(sudo, *install)
    if result.returncode != 0 or not CHROMIUM.exists():
        pytest.fail(f"`{how}` failed ({result.returncode}):\n{result.stderr[-2000:]}", pytrace=False)


@pytest.fixture(scope="module")
def _demo_stack_starting(
    tmp_path_factory: pytest.TempPathFactory, _isolate_aws: None
) -> Iterator[Future[Stack]]:
    """`fanout dev` with its demo page and the short timings above, starting in a thread."""
    env, tmp = stack_env(**DEMO_ENV), tmp_path_factory.mktemp("demo")
    with ThreadPoolExecutor(1, thread_name_prefix="demo-stack") as pool:
        starting = pool.submit(start_stack, tmp, env, demo=True)
        yield starting
    if starting.exception() is None:
        stop_stack_later(starting.result())


@pytest.fixture(scope="module")
def demo_stack(_demo_stack_starting: Future[Stack]) -> Stack:
    """The running stack, once its ready line is out."""
    return _demo_stack_starting.result()


# Module scope: Playwright's sync API keeps an event loop running on this thread while it is open, which
# the asyncio tests that follow in the same process cannot share.
@pytest.fixture(scope="module")
def browser(
    tmp_path_factory: pytest.TempPathFactory, _demo_stack_starting: Future[Stack]
) -> Iterator[BrowserContext]:
    """One headless Chromium with a fresh profile; each test opens its own pages (tabs) in it. It asks for
    the stack first, so that both start at once."""
    install_chromium()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            args=ARGS,
            headless=True,
            viewport={"width": 1280, "height": 640},
        )
        context.set_default_timeout(10_000)
        yield context
        context.close()
