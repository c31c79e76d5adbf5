"""End to end in a browser: Playwright drives Debian's headless chromium on the edit page, served by a real uvicorn
server with a real model. The page must show one highlighted edit per edit the API returned (matching its text),
accepting one edit must give the input with exactly that edit applied, and accepting all must give the model's
output. The embedded-model variant also saves the screenshot docs/serve-page.png when WRITETUNE_SCREENSHOT=1."""

import os
import re
from pathlib import Path

import pytest

from writetune.serve import BackgroundServer, ServedModel, ServeSettings, create_app
from writetune.serve.edits import apply_edits

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "serve-page.png"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed at /usr/bin/chromium (scripts/setup.sh "
                                       "installs it with apt-get)")


def _textarea(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")  # what a textarea's value does to line breaks


def _visible_as_is(text: str) -> bool:
    """The page shows whitespace-only pieces as ␣/↵ marks; anything else verbatim."""
    return bool(text) and not re.fullmatch(r"[\s\ufeff]+", text)


def drive_page(url: str, text: str, task: str, screenshot: Path) -> dict:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 760})
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
            page.goto(url + "/")
            page.wait_for_selector("body[data-ready=true]", timeout=30_000)
            assert page.locator("#task option[value=all]").count() == 1
            page.fill("#input", text)
            page.select_option("#task", task)
            with page.expect_response(lambda r: r.url.endswith("/v1/edit"), timeout=240_000) as info:
                page.click("#suggest")
            assert info.value.status == 200
            data = info.value.json()
            page.wait_for_selector("#review:not([hidden])")
            edits = sorted(data["edits"], key=lambda e: (e["start"], e["end"]))
            spans = page.locator("#suggestions .edit")
            assert spans.count() == len(edits)
            assert _textarea(page.input_value("#result")) == _textarea(text)  # nothing accepted yet
            if not edits:
                page.screenshot(path=str(screenshot), full_page=True)
                return data
            # every highlighted edit shows what the API returned, in order
            for k, edit in enumerate(edits):
                span = spans.nth(k)
                assert span.get_attribute("data-type") == edit["type"]
                assert span.locator("del").count() == (1 if edit["original"] else 0)
                assert span.locator("ins").count() == (1 if edit["replacement"] else 0)
                if _visible_as_is(edit["original"]):
                    assert span.locator("del").text_content() == edit["original"]
                if _visible_as_is(edit["replacement"]):
                    assert span.locator("ins").text_content() == edit["replacement"]
            assert spans.first.evaluate("e => getComputedStyle(e.querySelector('del, ins')).backgroundColor") \
                not in ("rgba(0, 0, 0, 0)", "transparent")  # highlighted
            # accept the first edit: the result is the input with that edit alone applied
            spans.nth(0).locator("button.accept").click()
            assert "accepted" in spans.nth(0).get_attribute("class")
            assert _textarea(page.input_value("#result")) == _textarea(apply_edits(text, edits[:1]))
            if len(edits) > 1:  # rejecting another changes nothing
                spans.nth(1).locator("button.reject").click()
                assert "rejected" in spans.nth(1).get_attribute("class")
                assert _textarea(page.input_value("#result")) == _textarea(apply_edits(text, edits[:1]))
            page.screenshot(path=str(screenshot), full_page=True)
            page.click("#accept-all")
            assert _textarea(page.input_value("#result")) == _textarea(data["output"])
            page.click("#copy")
            page.wait_for_selector("#copied:has-text('Copied')")
            assert not errors, errors
            return data
        finally:
            browser.close()


def test_page_shows_edits_and_accepting_one_applies_it(tiny_model_dir, tmp_path):
    served = ServedModel.load(str(tiny_model_dir), device="cpu", model_id="tiny")
    settings = ServeSettings(model="tiny", max_new_tokens=24, rewrite_check=False)
    with BackgroundServer(create_app(served, settings)) as url:
        data = drive_page(url, "She go to school. The cats is sleeping.", "grammaticality", tmp_path / "page.png")
    assert data["edits"], "the tiny random model rewrites the sentences, so there are edits to show"
    assert (tmp_path / "page.png").stat().st_size > 10_000


@pytest.mark.embedded
def test_page_with_the_embedded_model(tmp_path):
    served = ServedModel.load("smollm2-135m", device="cpu")
    text = ("She go to school every day and she like it. Yesterday he buyed three apple at the market.\n"
            "Their going to the park tomorrow, weather permitting.")
    with BackgroundServer(create_app(served, ServeSettings(max_new_tokens=96))) as url:
        target = DOCS_SCREENSHOT if os.environ.get("WRITETUNE_SCREENSHOT") == "1" else tmp_path / "page.png"
        data = drive_page(url, text, "grammaticality", target)
    assert apply_edits(text, data["edits"]) == data["output"]
