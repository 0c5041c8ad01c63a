"""In a real browser: generate with a label and with a prompt, restore the form from a generated PNG,
and inpaint with a mask painted by mouse drags on the canvas."""

import base64
import io

import pytest

pytest.importorskip("selenium", reason="selenium not installed (pip install -e '.[test]')")

from PIL import Image  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

from .browser import (  # noqa: E402
    GENERATE_IMAGES,
    GENERATE_STEPS,
    LABEL_RUN,
    TEXT_RUN,
    assert_no_traceback,
    loaded_image,
    open_page,
    page_errors,
    set_value,
    visible,
    wait,
)

pytestmark = pytest.mark.e2e


def generate(driver) -> Image.Image:
    """Click Generate, wait for the tiles and the final grid; the grid as the browser received it."""
    driver.find_element(By.ID, "generate-button").click()
    grid = loaded_image(driver, "#generated img#generated-grid, img#generated-grid")
    assert driver.find_elements(By.CSS_SELECTOR, "#generated img.generated-tile"), "no tile streamed into #generated"
    assert not page_errors(driver), page_errors(driver)
    assert_no_traceback(driver)
    return Image.open(io.BytesIO(fetch_bytes(driver, grid.get_attribute("src"))))


def fetch_bytes(driver, url: str) -> bytes:
    """``url`` (http, data: or blob:) fetched by the page itself, so it is what the user would download."""
    data = driver.execute_async_script(
        """const [url, done] = arguments;
        fetch(url).then(r => r.arrayBuffer()).then(b => {
            let s = ''; const u = new Uint8Array(b);
            for (let i = 0; i < u.length; i += 8192) s += String.fromCharCode.apply(null, u.subarray(i, i + 8192));
            done(btoa(s));
        }).catch(e => done('ERROR ' + e));""",
        url,
    )
    assert not data.startswith("ERROR"), f"{url}: {data}"
    return base64.b64decode(data)


def test_generate_with_a_label_and_restore_the_form_from_the_png(driver, server, tmp_path, shot):
    open_page(driver, server, f"/runs/{LABEL_RUN}/generate", "button#generate-button")
    assert not driver.find_elements(By.ID, "prompt"), "a class-conditional run offers a prompt box"
    label = Select(driver.find_element(By.ID, "label"))
    assert {o.get_attribute("value") for o in label.options} >= {"", *map(str, range(10))}
    label.select_by_value("3")
    set_value(driver, "#n", str(GENERATE_IMAGES))
    set_value(driver, "#seed", "123")
    if driver.find_elements(By.ID, "steps"):
        set_value(driver, "#steps", str(GENERATE_STEPS))
    # the guidance slider, moved with the keyboard as a user would, shows its value
    slider = driver.find_element(By.ID, "guidance")
    before = driver.find_element(By.ID, "guidance-value").text
    slider.click()
    slider.send_keys(Keys.END)
    wait(driver).until(lambda d: d.find_element(By.ID, "guidance-value").text != before, "#guidance-value unchanged")
    slider.send_keys(Keys.HOME)
    slider.send_keys(Keys.ARROW_RIGHT * round(2.0 / float(slider.get_attribute("step") or 1)))  # up to 2
    guidance = slider.get_attribute("value")
    assert float(guidance) == pytest.approx(2.0)
    wait(driver).until(lambda d: guidance in d.find_element(By.ID, "guidance-value").text, "#guidance-value wrong")

    grid = generate(driver)
    assert grid.size[0] > 8 and grid.size[1] > 8
    shot("generate")
    for link in ("download-png", "download-npy"):
        assert driver.find_element(By.ID, link).get_attribute("href"), f"#{link} has no href"
    png = fetch_bytes(driver, driver.find_element(By.ID, "download-png").get_attribute("href"))
    meta = Image.open(io.BytesIO(png)).info
    text = " ".join(str(v) for v in meta.values())
    assert "123" in text and LABEL_RUN in text, f"the PNG's metadata lacks the seed or the run: {meta}"
    npy = fetch_bytes(driver, driver.find_element(By.ID, "download-npy").get_attribute("href"))
    assert npy[:6] == b"\x93NUMPY"

    # a fresh form, then "load parameters from a PNG" restores seed, label and steps
    saved = tmp_path / "generated.png"
    saved.write_bytes(png)
    open_page(driver, server, f"/runs/{LABEL_RUN}/generate", "button#generate-button")
    set_value(driver, "#seed", "7")
    driver.find_element(By.ID, "load-png").send_keys(str(saved))
    wait(driver).until(lambda d: d.find_element(By.ID, "seed").get_attribute("value") == "123", "seed not restored")
    assert Select(driver.find_element(By.ID, "label")).first_selected_option.get_attribute("value") == "3"
    assert driver.find_element(By.ID, "guidance").get_attribute("value") == guidance


def test_generate_with_a_prompt(driver, server, runs_dir, shot):
    if not (runs_dir / TEXT_RUN).is_dir():
        pytest.skip("the text extra (sentence-transformers) is not installed: no text-conditional run")
    open_page(driver, server, f"/runs/{TEXT_RUN}/generate", "textarea#prompt")
    assert not driver.find_elements(By.ID, "label"), "a text-conditional run offers a label menu"
    driver.find_element(By.ID, "prompt").send_keys("a thick seven")
    set_value(driver, "#n", str(GENERATE_IMAGES))
    if driver.find_elements(By.ID, "steps"):
        set_value(driver, "#steps", str(GENERATE_STEPS))
    grid = generate(driver)
    assert grid.size[0] > 8
    shot("generate-prompt")


def mask_pixels(driver, canvas) -> int:
    """How many pixels of the mask canvas are painted (alpha > 0)."""
    return driver.execute_script(
        """const c = arguments[0], d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;""",
        canvas,
    )


def paint_stroke(driver, canvas) -> None:
    """A mouse drag across the middle of the canvas, then down: an L-shaped stroke."""
    w, h = canvas.size["width"], canvas.size["height"]
    (
        ActionChains(driver)
        .move_to_element_with_offset(canvas, -w // 4, -h // 8)  # offsets from the centre
        .click_and_hold()
        .move_by_offset(w // 8, 0)
        .move_by_offset(w // 8, 0)
        .move_by_offset(w // 8, 0)
        .move_by_offset(0, h // 4)
        .release()
        .perform()
    )


def test_inpaint_with_a_painted_mask(driver, server, shot):
    open_page(driver, server, f"/runs/{LABEL_RUN}/edit", "#inpaint")
    source = loaded_image(driver, "img#inpaint-source")
    canvas = visible(driver, "canvas#mask-canvas")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    assert mask_pixels(driver, canvas) == 0
    paint_stroke(driver, canvas)
    assert mask_pixels(driver, canvas) > 0, "dragging the mouse painted nothing on the mask"
    driver.find_element(By.ID, "mask-clear").click()
    wait(driver).until(lambda d: mask_pixels(d, canvas) == 0, "#mask-clear left paint on the mask")
    brush = driver.find_element(By.ID, "brush-size")
    if brush.get_attribute("type") == "range":
        brush.click()
        brush.send_keys(Keys.END)  # the widest brush
    else:
        brush.clear()
        brush.send_keys(brush.get_attribute("max") or "4")
    paint_stroke(driver, canvas)
    painted = mask_pixels(driver, canvas)
    assert painted > 0
    driver.find_element(By.ID, "inpaint-button").click()
    result = loaded_image(driver, "img#inpaint-result")
    assert not page_errors(driver), page_errors(driver)
    assert_no_traceback(driver)
    assert result.get_attribute("src") != source.get_attribute("src")
    shot("inpaint")


def pick_image_b(driver, index: int) -> str:
    """Type ``index`` into image B's field; its dataset preview's label once it has loaded."""
    before = driver.find_element(By.ID, "image-b").get_attribute("src")
    set_value(driver, "#index-b", str(index))
    driver.find_element(By.ID, "index-b").send_keys(Keys.TAB)  # a change event, as leaving the field does
    wait(driver).until(lambda d: d.find_element(By.ID, "image-b").get_attribute("src") != before, "#image-b stale")
    return loaded_image(driver, "img#image-b").get_attribute("data-label")


def test_interpolate_and_sdedit(driver, server, shot):
    open_page(driver, server, f"/runs/{LABEL_RUN}/edit", "#interpolate")
    label_a = loaded_image(driver, "img#image-a").get_attribute("data-label")
    set_value(driver, "#frames", "5")
    # two images of different classes: a class-conditional model refuses, with a message on the page
    index = next(i for i in range(1, 50) if pick_image_b(driver, i) != label_a)
    driver.find_element(By.ID, "interpolate-button").click()
    wait(driver).until(lambda d: page_errors(d), "no error message for two images of different classes")
    assert_no_traceback(driver)
    # two images of one class: the interpolation
    index = next(i for i in range(index + 1, 100) if pick_image_b(driver, i) == label_a)
    driver.find_element(By.ID, "interpolate-button").click()
    loaded_image(driver, "img#interpolate-result")
    wait(driver).until(lambda d: not page_errors(d), "the error message stayed after a good interpolation")

    strength = driver.find_element(By.ID, "strength")
    strength.click()
    strength.send_keys(Keys.HOME + Keys.ARROW_RIGHT * 14)  # 0.7 in steps of 0.05
    wait(driver).until(
        lambda d: d.find_element(By.ID, "strength-value").text.strip() in ("0.7", "0.70"), "#strength-value wrong"
    )
    driver.find_element(By.ID, "edit-button").click()
    loaded_image(driver, "img#edit-result")
    assert not page_errors(driver), page_errors(driver)
    assert_no_traceback(driver)
    shot("edit")
