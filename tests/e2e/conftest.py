"""Harness of the end-to-end tests: tiny runs, a real ``genlab serve`` process, headless Chromium.

* ``runs_dir`` (session): a RUNS_DIR with three tiny runs made through :func:`genlab.service.fit_run`
  (what ``genlab fit`` calls): a class-conditional diffusion, a text-conditional diffusion (when the
  ``text`` extra is installed) and a Gaussian mixture, all on the bundled digits, in seconds.
* ``server`` (session): ``python -m genlab serve RUNS_DIR --port 0`` as a subprocess; its URL is read
  from the one line it prints, ``genlab serve: http://HOST:PORT/``.
* ``driver`` (module): Selenium driving Debian's ``/usr/bin/chromium`` through ``/usr/bin/chromedriver``
  (never a browser or driver downloaded by Selenium Manager), headless, with the performance log on so
  that a test can list every request the pages made.
* ``shot``: saves a screenshot of the whole page; with ``GENLAB_UPDATE_SCREENSHOTS=1`` the ones the
  README shows go to ``docs/screenshots/`` (the rest, and all of them otherwise, to pytest's tmp dir).

When chromium, chromedriver or selenium are absent every test here skips with that reason
(``scripts/setup.sh`` installs the browser with apt-get when it can).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .browser import (
    CHROMEDRIVER,
    CHROMIUM,
    GMM_RUN,
    LABEL_RUN,
    README_SHOTS,
    SCREENSHOT_DIR,
    SERVER_START_TIMEOUT,
    TEXT_RUN,
    TIMEOUT,
    TINY_DIFFUSION,
    TINY_DIFFUSION_STEPS,
    UPDATE_SCREENSHOTS,
    URL_LINE,
    Server,
    screenshot,
)


def _browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} not installed (Debian: apt-get install chromium chromium-driver; scripts/setup.sh does it as root)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install -e '.[test]')"
    return None


def has_text_extra() -> bool:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def browser_available() -> None:
    reason = _browser_missing()
    if reason:
        pytest.skip(f"browser tests skipped: {reason}")


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory, browser_available) -> Path:
    """RUNS_DIR (empty here; the ``server`` fixture fills it with the tiny runs while the server starts)."""
    return tmp_path_factory.mktemp("runs")


def make_tiny_runs(root: Path) -> None:
    """LABEL_RUN, TEXT_RUN (when the text extra is there) and GMM_RUN in ``root``, through the service
    layer that ``genlab fit`` calls."""
    import torch

    from genlab.service import fit_run

    common = dict(max_steps=TINY_DIFFUSION_STEPS, params=TINY_DIFFUSION, n_samples=16, score_images=64, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: a second thread only fights the server for the cores
    try:
        # the README's run page: a full sample grid and grids over training (every 5 epochs)
        showcase = dict(n_samples=64, sample_every=5) if UPDATE_SCREENSHOTS else {}
        fit_run("diffusion", "digits", root / LABEL_RUN, condition="label", **{**common, **showcase})
        if has_text_extra():
            fit_run("diffusion", "digits", root / TEXT_RUN, condition="text", **common)
        fit_run("gmm", "digits", root / GMM_RUN, params={"n_components": 4})
        if UPDATE_SCREENSHOTS:  # the README's comparison shows two evaluated runs (the tests evaluate LABEL_RUN)
            from genlab.service import evaluate_run

            evaluate_run(root / GMM_RUN, n_samples=200)
    finally:
        torch.set_num_threads(threads)


def _read_url(proc: subprocess.Popen, timeout: float) -> str | None:
    """The URL of the server's ``genlab serve: URL`` line, or None when it exits or times out first."""
    found: list[str] = []
    done = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            m = URL_LINE.match(line.strip())
            if m and not found:
                found.append(m.group(1))
                done.set()
        done.set()  # stdout closed: the process ended

    threading.Thread(target=read, daemon=True).start()  # keeps draining stdout so the server never blocks
    done.wait(timeout)
    return found[0] if found else None


@pytest.fixture(scope="session")
def server(runs_dir, tmp_path_factory) -> Server:
    """``genlab serve RUNS_DIR --port 0`` in a subprocess, with the tiny runs in RUNS_DIR."""
    tmp = tmp_path_factory.mktemp("serve")
    log = tmp / "serve-stderr.log"
    env = dict(os.environ)
    # the server imports the genlab the tests import (a source checkout or the installed one)
    import genlab

    src = str(Path(genlab.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    env["GENLAB_DATA"] = str(tmp / "cache")  # never the user's download cache
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "genlab", "serve", str(runs_dir), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            cwd=tmp,
        )
    try:
        make_tiny_runs(runs_dir)  # while the server imports (it lists RUNS_DIR afresh on every request)
    except BaseException:
        _stop(proc)
        raise
    url = _read_url(proc, SERVER_START_TIMEOUT)
    server = Server(proc, url or "", log)
    if url is None:
        _stop(proc)
        pytest.fail(
            f"`genlab serve` printed no 'genlab serve: http://HOST:PORT/' line within {SERVER_START_TIMEOUT:.0f} s "
            f"(exit code {proc.returncode}); its stderr:\n{server.log_tail()}"
        )
    assert urlsplit(url).hostname in ("127.0.0.1", "localhost"), f"serve binds {url} by default, not loopback"
    yield server
    _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def driver(server, tmp_path_factory, screenshot_dir):
    """One headless Chromium per test module, with the performance (network) and console logs on."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
        "--lang=en-US",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    drv = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    drv.set_page_load_timeout(TIMEOUT)
    drv.requests_seen = []  # every URL the pages requested (filled by request_urls)
    drv.screenshot_dir = screenshot_dir  # where a failing test leaves its page
    yield drv
    drv.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory) -> Path:
    """Where the screenshots go that the README does not show (all of them without GENLAB_UPDATE_SCREENSHOTS)."""
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def shot(driver, screenshot_dir):
    """``shot(name, element=None, max_height=2400)`` saves a screenshot of the whole page (or of
    ``element``), at most ``max_height`` CSS px from its top, as NAME.png and returns its path."""

    def save(name: str, element=None, max_height: int = 2400) -> Path:
        folder = SCREENSHOT_DIR if UPDATE_SCREENSHOTS and name in README_SHOTS else screenshot_dir
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        screenshot(driver, path, element, max_height=max_height)
        return path

    return save


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing browser test reports the server's stderr and leaves a screenshot of the page."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    server = item.funcargs.get("server")
    if isinstance(server, Server):
        report.sections.append(("genlab serve stderr (last lines)", server.log_tail()))
    driver = item.funcargs.get("driver")
    if driver is not None:
        path = driver.screenshot_dir / f"FAILED-{item.name}.png"
        try:
            screenshot(driver, path)
            report.sections.append(("screenshot", f"{path} (page {driver.current_url})"))
        except Exception as exc:  # the browser itself may be what failed
            report.sections.append(("screenshot", f"none: {exc}"))
