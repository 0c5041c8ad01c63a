"""In a real browser: start a tiny training on digits from /train, watch its progress arrive (step,
loss curve, sample grid), see the new run in the runs table; cancel a job and resume it."""

import re

import pytest

pytest.importorskip("selenium", reason="selenium not installed (pip install -e '.[test]')")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

from .browser import (  # noqa: E402
    TIMEOUT,
    TINY_DIFFUSION,
    UPDATE_SCREENSHOTS,
    assert_no_traceback,
    loaded_image,
    open_page,
    page_errors,
    set_value,
    visible,
    wait,
)

pytestmark = pytest.mark.e2e

# the tiny diffusion of tests/test_diffusion.py (wider and longer for the README's screenshot)
TINY_FORM = {name: str(value) for name, value in TINY_DIFFUSION.items()}
TRAIN_STEPS = 240 if UPDATE_SCREENSHOTS else 60
# set when the form offers them (the server may fix them itself: a sample grid every epoch, ~20 steps on digits)
OPTIONAL_FORM = {"sample_every": "1"}


def fill_train_form(driver, run_name: str, max_steps: int) -> None:
    Select(driver.find_element(By.ID, "data")).select_by_value("digits")
    Select(driver.find_element(By.ID, "model")).select_by_value("diffusion")
    # the parameter fieldset is rebuilt from the family's schema when the model changes
    wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, '#params [name="param-width"]'), "no param-width")
    if driver.find_elements(By.ID, "condition"):
        condition = Select(driver.find_element(By.ID, "condition"))
        values = [o.get_attribute("value") for o in condition.options]
        assert {"none", "label", "text"} <= set(values), values  # diffusion takes all three
        condition.select_by_value("none")
    for name, value in TINY_FORM.items():
        set_value(driver, f'#params [name="param-{name}"]', value)
    for name, value in OPTIONAL_FORM.items():
        if driver.find_elements(By.CSS_SELECTOR, f'#params [name="param-{name}"]'):
            set_value(driver, f'#params [name="param-{name}"]', value)
    set_value(driver, "#run-name", run_name)
    set_value(driver, "#max-steps", str(max_steps))


def job_step(driver) -> int | None:
    text = driver.find_element(By.ID, "job-step").text
    m = re.search(r"\d+", text)
    return int(m.group()) if m else None


def job_status(driver) -> str:
    return driver.find_element(By.ID, "job-status").text.strip().lower()


def wait_status(driver, wanted: set[str], timeout: float = TIMEOUT) -> str:
    def reached(d):
        status = job_status(d)
        assert status != "failed" or "failed" in wanted, (
            f"the job failed: {page_errors(d)} {d.find_element(By.ID, 'job-panel').text}"
        )
        return status if status in wanted else False

    return wait(driver, timeout).until(reached, f"job status never became one of {sorted(wanted)}")


def wait_step_above(driver, step: int, timeout: float = TIMEOUT) -> int:
    return wait(driver, timeout).until(
        lambda d: (s := job_step(d)) is not None and s > step and s, f"#job-step never passed {step}"
    )


def test_train_tiny_diffusion_and_watch_progress(driver, server, runs_dir, shot):
    open_page(driver, server, "/train", "form#train-form")
    fill_train_form(driver, "e2e-trained", max_steps=TRAIN_STEPS)
    driver.find_element(By.ID, "train-submit").click()
    visible(driver, "#job-panel")
    wait_status(driver, {"queued", "running", "done"})
    first = wait_step_above(driver, 0)
    later = wait_step_above(driver, first)
    assert 0 < first < later  # progress streamed to the page while it trained, not only at the end
    loaded_image(driver, "img#job-preview")  # a sample grid written during training
    assert driver.find_elements(By.CSS_SELECTOR, "#job-loss svg, #job-loss img, svg#job-loss, img#job-loss")
    if UPDATE_SCREENSHOTS:  # a grid from late in training, when the samples look like digits
        wait_step_above(driver, TRAIN_STEPS - 50, timeout=600)
        loaded_image(driver, "img#job-preview")
    shot("train")
    wait_status(driver, {"done"}, timeout=240)
    assert job_step(driver) == TRAIN_STEPS
    assert not page_errors(driver), page_errors(driver)
    assert_no_traceback(driver)
    assert (runs_dir / "e2e-trained" / "config.json").is_file()

    driver.find_element(By.ID, "nav-runs").click()
    visible(driver, 'tr.run-row[data-run="e2e-trained"]')
    loaded_image(driver, 'tr.run-row[data-run="e2e-trained"] img.run-thumb')


def test_cancel_keeps_the_run_resumable(driver, server, runs_dir, shot):
    open_page(driver, server, "/train", "form#train-form")
    fill_train_form(driver, "e2e-cancelled", max_steps=100000)
    driver.find_element(By.ID, "train-submit").click()
    wait_status(driver, {"running"})
    wait_step_above(driver, 25)  # past the first epoch of digits (~20 steps): a checkpoint is on disk
    driver.find_element(By.ID, "cancel-button").click()
    wait_status(driver, {"cancelled"})
    shot("train-cancelled")
    # the checkpoints stay (in the run folder, or the hidden staging folder of a run not yet published)
    assert list(runs_dir.glob("*e2e-cancelled*/checkpoints/*")), sorted(p.name for p in runs_dir.iterdir())

    # resuming continues from the checkpoint (tests/test_ui_api.py checks the steps); here: the buttons work
    visible(driver, "button#resume-button").click()
    wait_status(driver, {"running"})
    assert job_step(driver) >= 20  # the page still shows the progress made before the cancel
    driver.find_element(By.ID, "cancel-button").click()
    wait_status(driver, {"cancelled"})
    assert_no_traceback(driver)
    shot("train-resumed-cancelled")
