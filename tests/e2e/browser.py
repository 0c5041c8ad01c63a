"""Helpers of the end-to-end tests: waits, page checks, screenshots, the requests a page made."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = ROOT / "docs" / "screenshots"
#: the screenshots the README shows (docs/screenshots/NAME.png)
README_SHOTS = {"runs", "run", "train", "generate", "inpaint", "compare", "evaluate"}
#: generous: the 2-core machine the tests run on is shared and often loaded
TIMEOUT = float(os.environ.get("GENLAB_E2E_TIMEOUT", "90"))
SERVER_START_TIMEOUT = 120.0
URL_LINE = re.compile(r"^genlab serve: (http://\S+/)\s*$")

#: the tiny runs every test sees (run name -> what it is)
LABEL_RUN = "digits-diffusion-label"
TEXT_RUN = "digits-diffusion-text"
GMM_RUN = "digits-gmm"
#: GENLAB_UPDATE_SCREENSHOTS=1: write the README's screenshots (docs/screenshots/), from runs trained long
#: enough to draw digits (a few minutes more); otherwise the runs are tiny and the shots go to a tmp dir
UPDATE_SCREENSHOTS = os.environ.get("GENLAB_UPDATE_SCREENSHOTS", "") not in ("", "0")
if UPDATE_SCREENSHOTS:
    TINY_DIFFUSION = {"width": 16, "elbo_points": 2, "steps": 20}
    TINY_DIFFUSION_STEPS = 600
else:  # the tiny configuration of tests/test_diffusion.py and tests/test_cli.py: seconds on a CPU
    TINY_DIFFUSION = {"width": 8, "elbo_points": 2, "steps": 4, "warmup_steps": 0}
    TINY_DIFFUSION_STEPS = 12
#: sampling steps and images of the generate tests
GENERATE_STEPS, GENERATE_IMAGES = (20, 16) if UPDATE_SCREENSHOTS else (4, 8)


class Server:
    """A running ``genlab serve`` subprocess."""

    def __init__(self, proc: subprocess.Popen, url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def page(self, path: str = "") -> str:
        return self.url + path.lstrip("/")

    def log_tail(self, n: int = 40) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])


def screenshot(driver, path: Path, element=None, max_height: int = 2400, margin: int = 12) -> None:
    """A PNG of the whole page (or of ``element`` with a margin), beyond the window, at most ``max_height``
    CSS px tall: Chromium's DevTools capture, so nothing is cut at the viewport's edge."""
    if element is None:
        size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], max_height)}
    else:
        rect = driver.execute_script(
            "const r = arguments[0].getBoundingClientRect();"
            "return {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height}",
            element,
        )
        x, y = max(rect["x"] - margin, 0), max(rect["y"] - margin, 0)
        clip = {
            "x": x,
            "y": y,
            "width": rect["width"] + 2 * margin,
            "height": min(rect["height"] + 2 * margin, max_height),
        }
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": {**clip, "scale": 1}}
    )
    path.write_bytes(base64.b64decode(shot["data"]))


def wait(driver, timeout: float = TIMEOUT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.25)


def visible(driver, css: str, timeout: float = TIMEOUT):
    """The element matching ``css`` once it is displayed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    return wait(driver, timeout).until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)), f"{css} not shown")


def loaded_image(driver, css: str, timeout: float = TIMEOUT):
    """The first ``img`` matching ``css`` once the browser has decoded it (naturalWidth > 0)."""
    from selenium.webdriver.common.by import By

    def ready(d):
        for el in d.find_elements(By.CSS_SELECTOR, css):
            if d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", el):
                return el
        return False

    return wait(driver, timeout).until(ready, f"no loaded image {css}")


def open_page(driver, server: Server, path: str, ready_css: str):
    """Open ``path`` of the app and wait for ``ready_css``; a traceback on the page fails the test."""
    driver.get(server.page(path))
    el = visible(driver, ready_css)
    assert_no_traceback(driver)
    return el


def set_value(driver, css: str, value: str) -> None:
    """Type ``value`` into the field ``css`` (a select: choose the option of that value)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    field = driver.find_element(By.CSS_SELECTOR, css)
    if field.tag_name == "select":
        Select(field).select_by_value(value)
    else:
        field.clear()
        field.send_keys(value)


def assert_no_traceback(driver) -> None:
    text = driver.find_element("tag name", "body").text
    assert "Traceback (most recent call last)" not in text, text[:2000]


def page_errors(driver) -> list[str]:
    """The texts of the page's visible error messages (elements of class ``error``)."""
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".error") if e.is_displayed() and e.text.strip()]


def request_urls(driver) -> list[str]:
    """Every URL the pages requested since the last call (from Chromium's performance log), also kept
    in ``driver.requests_seen``; plus what the current page's Resource Timing lists."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
        elif message.get("method") == "Network.webSocketCreated":
            urls.append(message["params"]["url"])
    urls += driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".concat(performance.getEntriesByType('navigation').map(e => e.name))"
    )
    driver.requests_seen.extend(urls)
    return urls


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about", "chrome", "chrome-untrusted", "chrome-error", "devtools"):
        return True
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname in ("127.0.0.1", "localhost", "::1")
