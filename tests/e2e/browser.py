"""Helpers of the end-to-end tests: waits, page checks, screenshots, the requests a page made."""

from __future__ import annotations

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
# the tiny configuration of tests/test_diffusion.py and tests/test_cli.py: seconds on a CPU
TINY_DIFFUSION = {"width": 8, "elbo_points": 2, "steps": 4, "warmup_steps": 0}
TINY_DIFFUSION_STEPS = 12


class Server:
    """A running ``genlab serve`` subprocess."""

    def __init__(self, proc: subprocess.Popen, url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def page(self, path: str = "") -> str:
        return self.url + path.lstrip("/")

    def log_tail(self, n: int = 40) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])


def full_page_screenshot(driver, path: Path, width: int = 1280, max_height: int = 2400) -> None:
    """The whole page (up to ``max_height`` px): the window is grown to the document for the shot."""
    old = driver.get_window_size()
    script = "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"
    height = 0
    for _ in range(3):  # growing the window can reflow the page (wider images, late layout): measure again
        new = min(max(int(driver.execute_script(script)), 600), max_height)
        if new == height:
            break
        height = new
        driver.set_window_size(width, height)
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(old["width"], old["height"])


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
