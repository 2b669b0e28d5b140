"""The HTML report in a real browser: headless Chromium draws the timeline.

Skipped when Chromium is not installed, unless IRBOOK_REQUIRE_BROWSER=1 (CI sets it and
installs Debian's `chromium`): then a missing browser is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageFilter

from irbook.drill.report import (
    CONTAINMENT_COLOUR,
    PLOT_BACKGROUND,
    STATE_COLOURS,
    render_html,
)
from irbook.drill.result import DrillResult
from tests.irbook.drill.test_report import evil_result, make_result

WIDTH, HEIGHT = 1280, 2000
TOLERANCE = 2  # per channel: solid SVG fills come out exact, this only absorbs rounding
BAR_PIXELS = 500  # a drawn bar is 18px tall and tens of pixels long; a stray pixel is not


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = (
            "headless Chromium is needed to render the drill report: "
            "install Debian's package (apt-get install -y chromium)"
        )
        if os.environ.get("IRBOOK_REQUIRE_BROWSER") == "1":
            pytest.fail(f"IRBOOK_REQUIRE_BROWSER=1 but no chromium on PATH: {message}")
        pytest.skip(message)
    return found


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    command = [
        _chromium(),
        "--headless=new",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture
def screenshot(tmp_path: Path) -> Callable[[DrillResult, str], Image.Image]:
    def take(result: DrillResult, name: str) -> Image.Image:
        page = tmp_path / f"{name}.html"
        page.write_text(render_html(result), encoding="utf-8")
        png = tmp_path / f"{name}.png"
        done = _run(
            tmp_path, f"--screenshot={png}", f"--window-size={WIDTH},{HEIGHT}", page.as_uri()
        )
        assert png.exists(), f"chromium wrote no screenshot:\n{done.stdout}\n{done.stderr}"
        with Image.open(png) as image:
            return image.convert("RGB")

    return take


@dataclass
class Found:
    count: int
    box: tuple[int, int, int, int] | None  # left, top, right, bottom (exclusive)


def find(image: Image.Image, colour: str, *, solid: int = 1) -> Found:
    """The pixels of one colour: how many, and their bounding box.

    With `solid` > 1, only pixels inside a solid square of that size count: that drops
    the odd anti-aliased pixel of text or an edge that happens to be of the colour.
    """
    rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    masks = [
        band.point(lambda v, c=c: 255 if abs(v - c) <= TOLERANCE else 0)
        for band, c in zip(image.split(), rgb, strict=True)
    ]
    mask = ImageChops.multiply(ImageChops.multiply(masks[0], masks[1]), masks[2])
    if solid > 1:
        mask = mask.filter(ImageFilter.MinFilter(solid))
    return Found(mask.histogram()[255], mask.getbbox())


def plot_area(image: Image.Image) -> Image.Image:
    """The timeline's plot area: the box of its background colour, used nowhere else."""
    found = find(image, PLOT_BACKGROUND, solid=5)
    assert found.box is not None, "no timeline plot area in the screenshot"
    left, top, right, bottom = found.box = (
        found.box[0] - 2,
        found.box[1] - 2,
        found.box[2] + 2,
        found.box[3] + 2,
    )
    assert right - left > WIDTH // 2, f"the plot area is too narrow: {found.box}"
    assert bottom - top > 100, f"the plot area is too short: {found.box}"
    return image.crop(found.box)


def test_timeline_bars_are_drawn(
    screenshot: Callable[[DrillResult, str], Image.Image],
) -> None:
    image = screenshot(make_result(), "drill")
    plot = plot_area(image)
    width = plot.width
    green = find(plot, STATE_COLOURS["succeeded"], solid=3)
    red = find(plot, STATE_COLOURS["failed"], solid=3)
    # two green bars (0s-20s, 3m20s-4m20s) and one red one (4m20s-5m30s), 18px tall
    assert green.count > BAR_PIXELS, green
    assert red.count > BAR_PIXELS, red
    assert green.box is not None and red.box is not None
    # drawn to scale on an axis of 0s..6m: notify-channel starts at the left edge, the
    # failed open-ticket runs from 4m20s to 5m30s, right after disable-key ends
    assert green.box[0] <= 3
    assert red.box[0] / width == pytest.approx(260 / 360, abs=0.01)
    assert red.box[2] / width == pytest.approx(330 / 360, abs=0.01)
    assert green.box[2] / width == pytest.approx(260 / 360, abs=0.01)  # disable-key's end
    assert red.box[1] > green.box[1]  # open-ticket is a row below the first step
    # the containment line at 4m20s crosses the plot
    line = find(plot, CONTAINMENT_COLOUR)
    assert line.box is not None and line.box[3] - line.box[1] > plot.height * 0.9
    assert (line.box[0] + line.box[2]) / 2 / width == pytest.approx(260 / 360, abs=0.01)
    # no colour of a state that no step has
    assert find(plot, STATE_COLOURS["rejected"], solid=3).count < BAR_PIXELS


def test_timeline_without_started_steps_has_no_bars(
    screenshot: Callable[[DrillResult, str], Image.Image],
) -> None:
    """The same check on a drill where no step started: it must find nothing."""
    image = screenshot(make_result(started=False), "idle")
    plot = plot_area(image)  # the frame is drawn all the same
    for state, colour in STATE_COLOURS.items():
        found = find(plot, colour, solid=3)
        assert found.count < BAR_PIXELS, (state, found)  # the predicate that passed above
        assert found.count == 0, (state, found)
    assert find(plot, CONTAINMENT_COLOUR).count == 0  # not contained: no line


def test_attacker_text_stays_text_in_the_browser(tmp_path: Path) -> None:
    page = tmp_path / "evil.html"
    page.write_text(render_html(evil_result()), encoding="utf-8")
    done = _run(tmp_path, "--dump-dom", page.as_uri())
    dom = done.stdout
    assert "<main>" in dom, done.stderr
    assert "<script" not in dom.lower()
    assert "<img" not in dom.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "${{ alert.title }}" in dom
