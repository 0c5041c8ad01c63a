"""In a real browser: the runs table, a run's page, its evaluation, comparing two runs, and that no page
ever asks anything of the network beyond the local server."""

import re
import shutil

import pytest

pytest.importorskip("selenium", reason="selenium not installed (pip install -e '.[test]')")

from selenium.webdriver.common.by import By  # noqa: E402

from .browser import (  # noqa: E402
    GMM_RUN,
    LABEL_RUN,
    TINY_DIFFUSION,
    assert_no_traceback,
    is_local,
    loaded_image,
    open_page,
    page_errors,
    request_urls,
    visible,
    wait,
)

pytestmark = pytest.mark.e2e


def row_names(driver) -> list[str]:
    return [r.get_attribute("data-run") for r in driver.find_elements(By.CSS_SELECTOR, "#runs-table tr.run-row")]


def test_runs_table_lists_every_run_with_its_samples(driver, server, runs_dir, shot):
    open_page(driver, server, "/", "table#runs-table")
    expected = sorted(p.name for p in runs_dir.iterdir() if (p / "config.json").is_file())
    assert sorted(row_names(driver)) == expected
    for name in expected:
        row = driver.find_element(By.CSS_SELECTOR, f'tr.run-row[data-run="{name}"]')
        assert (
            row.find_element(By.CSS_SELECTOR, "a.run-link").get_attribute("href").rstrip("/").endswith(f"/runs/{name}")
        )
        row.find_element(By.CSS_SELECTOR, f'input.run-select[value="{name}"]')
    loaded_image(driver, f'tr.run-row[data-run="{LABEL_RUN}"] img.run-thumb')
    assert driver.find_element(By.ID, "nav-runs") and driver.find_element(By.ID, "nav-train")
    shot("runs")

    # a sortable column: clicking its header twice reverses the order it gave
    headers = driver.find_elements(By.CSS_SELECTOR, "#runs-table th[data-sort]")
    assert headers, "no sortable column header th[data-sort]"
    by_name = [h for h in headers if h.get_attribute("data-sort") in ("name", "run")]
    header = by_name[0] if by_name else headers[0]
    header.click()
    first = row_names(driver)
    driver.find_element(By.CSS_SELECTOR, f'#runs-table th[data-sort="{header.get_attribute("data-sort")}"]').click()
    wait(driver).until(lambda d: row_names(d) != first, "clicking a sorted column's header again changes nothing")
    if by_name:
        assert row_names(driver) == first[::-1]
        assert sorted(first) in (first, first[::-1])


def test_run_page_shows_parameters_curves_and_samples(driver, server, shot):
    open_page(driver, server, "/", "table#runs-table")
    driver.find_element(By.CSS_SELECTOR, f'tr.run-row[data-run="{LABEL_RUN}"] a.run-link').click()
    params = visible(driver, "#run-params")
    assert re.search(rf"width\s+{TINY_DIFFUSION['width']}\b", params.text), params.text  # the run's own parameter
    visible(driver, "#training-curves")
    assert driver.find_elements(By.CSS_SELECTOR, "#training-curves img, #training-curves svg"), "no curve drawn"
    loaded_image(driver, "#sample-grid img, img#sample-grid")
    visible(driver, "#evaluation")
    assert driver.find_element(By.ID, "generate-link").get_attribute("href").endswith(f"/runs/{LABEL_RUN}/generate")
    assert driver.find_element(By.ID, "edit-link").get_attribute("href").endswith(f"/runs/{LABEL_RUN}/edit")
    assert_no_traceback(driver)
    shot("run", max_height=1500)  # the top: samples, curves, grids over training, the first parameters


def test_evaluate_fills_the_evaluation_with_memorisation_and_baseline(driver, server, shot):
    open_page(driver, server, f"/runs/{LABEL_RUN}", "button#evaluate-button")
    for n in driver.find_elements(By.ID, "eval-n"):  # fewer samples than the default 1000, when offered
        n.clear()
        n.send_keys("200")
    driver.find_element(By.ID, "evaluate-button").click()
    # evaluate samples and scores the tiny model's images: seconds, but the machine is shared
    loaded_image(driver, "#evaluation img#memorisation-strip", timeout=240)
    loaded_image(driver, "#evaluation img#baseline-strip")
    assert not page_errors(driver), page_errors(driver)
    assert_no_traceback(driver)
    shot("evaluate", driver.find_element(By.ID, "evaluation"))


def test_compare_two_selected_runs(driver, server, shot):
    open_page(driver, server, "/", "table#runs-table")
    for name in (LABEL_RUN, GMM_RUN):
        box = driver.find_element(By.CSS_SELECTOR, f'input.run-select[value="{name}"]')
        if not box.is_selected():
            box.click()
    driver.find_element(By.ID, "compare-button").click()
    table = visible(driver, "table#compare-table")
    assert "runs=" in driver.current_url
    assert LABEL_RUN in table.text and GMM_RUN in table.text
    # one row per run (beside reference rows such as "real data", as `genlab compare` prints them)
    firsts = [
        r.find_element(By.CSS_SELECTOR, "th, td").text.strip() for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]
    assert sorted(f for f in firsts if f in (LABEL_RUN, GMM_RUN)) == sorted([LABEL_RUN, GMM_RUN]), firsts
    assert all(f in (LABEL_RUN, GMM_RUN) or "real" in f.lower() for f in firsts), firsts
    wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".compare-plot"), "no comparison plot")
    assert_no_traceback(driver)
    shot("compare")


def test_no_page_requests_anything_but_the_local_server(driver, server, shot):
    """Every page of the app, each with all its scripts, styles, fonts and images: only localhost."""
    pages = [
        ("/", "table#runs-table"),
        ("/train", "form#train-form"),
        (f"/runs/{LABEL_RUN}", "#run-params"),
        (f"/runs/{LABEL_RUN}/generate", "button#generate-button"),
        (f"/runs/{LABEL_RUN}/edit", "#inpaint"),
        (f"/compare?runs={LABEL_RUN}&runs={GMM_RUN}", "table#compare-table"),
    ]
    request_urls(driver)  # what the earlier tests of this module requested goes into driver.requests_seen
    for path, ready in pages:
        open_page(driver, server, path, ready)
        wait(driver, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")
        shot("offline-" + (re.sub(r"[^a-z]+", "-", path.split("?")[0]).strip("-") or "runs"))
        urls = request_urls(driver)
        assert any(server.url.rstrip("/") in u for u in urls), f"{path}: the performance log saw no request"
    external = sorted({u for u in driver.requests_seen if not is_local(u)})
    assert not external, f"requests beyond localhost: {external}"
    # the page's scripts ran without errors (a missing favicon is not one)
    errors = [
        e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]
    ]
    assert not errors, errors


def test_runs_page_with_a_hundred_runs_loads_in_under_a_second(driver, server, runs_dir, shot):
    """Issue #12: the runs page loads in well under a second with 100 runs (here: its document, parsed and
    laid out, once the server has seen the runs; the thumbnails load after)."""
    copies = [runs_dir / f"zz-copy-{k:03d}" for k in range(100 - len(list(runs_dir.glob("*/config.json"))))]
    try:
        for folder in copies:
            shutil.copytree(runs_dir / GMM_RUN, folder)
        loaded = (
            "const n = performance.getEntriesByType('navigation')[0]; return n.domContentLoadedEventEnd - n.startTime"
        )
        open_page(driver, server, "/", "table#runs-table")  # the first visit reads every run's summary
        assert len(row_names(driver)) >= 100
        first = driver.execute_script(loaded)
        times = []
        for _ in range(3):
            open_page(driver, server, "/", "table#runs-table")
            times.append(driver.execute_script(loaded))
        shot("runs-100")
        print(f"runs page, 100 runs: DOMContentLoaded after {first:.0f} ms (first visit), then {times} ms")
        assert min(times) < 1000, f"the runs page with 100 runs took {times} ms to load"
    finally:
        for folder in copies:
            shutil.rmtree(folder, ignore_errors=True)
