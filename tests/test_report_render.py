"""The report as a reader sees it: rendered in headless Chromium at 1400 pixels, every figure
loads, nothing overflows its box, no ``value ± std`` cell wraps; and the figures themselves:
reliability diagrams show per-bin counts and name every colour, disagreement grids spread over
the classes and keep their title, a chart with nothing to draw is a sentence instead.

Chromium is required, not optional: ``.ci/run`` installs the distribution's ``chromium``
package; without it the render test fails and says how to install it.
"""

from __future__ import annotations

import fnmatch
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from occam_l2r.cli import main
from occam_l2r.fusion.synthetic import write_synthetic_runs
from occam_l2r.logits import LogitsFile
from occam_l2r.reporting.figures import (
    RELIABILITY_COLORS,
    Tile,
    image_grid_figure,
    reliability_figure,
)
from occam_l2r.reporting.fused_sections import sample_across_classes
from occam_l2r.reporting.stats import reliability

SIZES = {"train": 60, "val": 60, "test_id": 60, "test_shift": 60}
TESTS = ["test_id", "test_shift"]
WIDTH = 1400

#: recorded into the page once it has loaded: each image's natural width, every element whose
#: content is wider than its box, every table cell with "±" laid out on more than one line
CHECK_JS = """
window.addEventListener("load", () => {
  const out = {images: [], overflow: [], wrapped: []};
  for (const img of document.images) {
    out.images.push({alt: img.alt, complete: img.complete, natural: img.naturalWidth,
                     shown: img.getBoundingClientRect().width});
  }
  for (const el of document.body.querySelectorAll("*")) {
    if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
      out.overflow.push({tag: el.tagName, scroll: el.scrollWidth, client: el.clientWidth,
                         text: el.textContent.slice(0, 80)});
    }
  }
  for (const td of document.querySelectorAll("td")) {
    if (!td.textContent.includes("\\u00b1")) continue;
    const range = document.createRange();
    range.selectNodeContents(td);
    const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
    if (tops.size > 1) out.wrapped.push(td.textContent);
  }
  out.page = {scroll: document.documentElement.scrollWidth, inner: window.innerWidth};
  const pre = document.createElement("pre");
  pre.id = "render-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
"""

INSTALL = (
    "headless Chromium is needed to check the report as a reader sees it: install the "
    "distribution's package (`sudo apt-get install chromium`; .ci/run does it), or point "
    "OCCAM_CHROMIUM at a Chromium or Chrome binary"
)


def chromium() -> str:
    """The Chromium binary (``$OCCAM_CHROMIUM``, else the first on ``PATH``); fails the test,
    naming how to install it, when there is none."""
    given = os.environ.get("OCCAM_CHROMIUM")
    found = given or next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
         if shutil.which(n)), None,
    )  # fmt: skip
    if not found or not Path(found).exists():
        pytest.fail(f"Chromium not found ({found or 'not on PATH'}): {INSTALL}", pytrace=False)
    return found


def _chromium_args(tmp: Path) -> list[str]:
    return [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp / 'chromium-profile'}", f"--window-size={WIDTH},1000"]  # fmt: skip


def render_check(page: Path, tmp: Path) -> dict:
    """Open a copy of ``page`` with :data:`CHECK_JS` in headless Chromium; what it recorded."""
    probe = tmp / "probe.html"
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", f"<script>{CHECK_JS}</script></body>"), "utf-8")
    run = subprocess.run(
        [*_chromium_args(tmp), "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    found = re.search(r'<pre id="render-check">(.*?)</pre>', run.stdout, re.S)
    assert found, f"Chromium recorded nothing (rc {run.returncode}): {run.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def _write_images(root: Path, ids: list[str]) -> None:
    for i, image_id in enumerate(ids):
        path = root / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24, 18), ((53 * i) % 255, 120, 90)).save(path)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    """A small experiment (3 views, 1 seed, images on disk, no sample falling back) fused by
    ``fuse`` and reported by ``report``, both through the command line."""
    tmp = tmp_path_factory.mktemp("render")
    runs = write_synthetic_runs(tmp / "runs", num_classes=4, seeds=1, sizes=SIZES)
    data = tmp / "data"
    for split in TESTS:
        _write_images(data, LogitsFile.load(Path(runs["FULL"][0], "logits", f"{split}.npz")).ids)
    dataset = {"class_path": "occam_l2r.data.datasets.synthetic.SyntheticSpurious",
               "init_args": {"root": str(data), "num_classes": 4}}  # fmt: skip
    Path(runs["FULL"][0], "config.yaml").write_text(
        yaml.safe_dump({"data": {"init_args": {"dataset": dataset}}})
    )
    fuse_cfg = {"runs": runs, "output_dir": str(tmp / "fusion"), "pairs": [["FG_C", "BG_S"]],
                "methods": ["max_conf", "ts_average", "weighted_logits"], "test_splits": TESTS,
                "sample_reports": ["max_conf"]}  # fmt: skip
    (tmp / "fuse.yaml").write_text(yaml.safe_dump(fuse_cfg))
    main(["fuse", "--config", str(tmp / "fuse.yaml")])
    result = main(["report", "--fusion_dir", str(tmp / "fusion"), "--output_dir",
                   str(tmp / "report"), "--grid_images", "8"])  # fmt: skip
    return {**result, "tmp": tmp}


@pytest.mark.slow
def test_report_renders_in_chromium(report):
    page = Path(report["html"])
    seen = render_check(page, report["tmp"])
    assert report["skipped"] == []
    assert len(seen["images"]) == len(report["figures"]) >= 8
    for img in seen["images"]:  # every embedded PNG decoded and laid out
        assert img["complete"] and img["natural"] > 0 and img["shown"] > 0, img
    assert seen["overflow"] == []  # no box wider than it shows (titles, tables, figures)
    assert seen["page"]["scroll"] <= seen["page"]["inner"] == WIDTH
    assert seen["wrapped"] == []  # "value ± std" on one line
    text = page.read_text(encoding="utf-8")
    assert "±" in text and "<style>" in text
    names = {Path(f).name for f in report["figures"]}
    assert {f"reliability_{v}.png" for v in ("FULL", "FG_C", "BG_S")} <= names
    # nothing fell back: no empty bar chart, a sentence instead
    assert "fallback_rates.png" not in names
    assert "No sample fell back to the full image" in text
    # the grid is spread over the true classes, and its table lists what the grid shows
    for split in TESTS:
        grid = pd.read_csv(report["tmp"] / "report" / f"disagreements_{split}.csv")
        want = min(8, len(grid))
        if not want:
            continue
        assert f"{split}: {want} of the {len(grid)} disagreements, sampled across" in text
        assert f"disagreements_{split}.png" in names


@pytest.mark.slow
def test_chromium_screenshot_is_the_page(report, tmp_path):
    """The page as a picture (what docs/report.md shows): a full-width, non-blank screenshot."""
    shot = tmp_path / "shot.png"
    subprocess.run([*_chromium_args(tmp_path), f"--screenshot={shot}",
                    Path(report["html"]).as_uri()], capture_output=True, timeout=180)  # fmt: skip
    assert shot.exists(), INSTALL
    with Image.open(shot) as im:
        assert im.size[0] == WIDTH
        assert np.asarray(im.convert("L")).std() > 5  # not a blank page


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_reliability_diagram_shows_counts_and_names_every_colour():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    z = 2.5 * np.eye(4)[y] + 1.2 * rng.standard_normal((300, 4))
    before, after = reliability(z, y, 1.0, 10), reliability(z, y, 0.4, 10)
    fig = reliability_figure(before, after, "FULL on test_id")
    texts = _texts(fig)
    for rel in (before, after):  # each non-empty bin's count is written on the figure
        for n in rel.count[rel.count > 0]:
            assert str(int(n)) in texts
    legend = fig.legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    assert any("over-confident" in x for x in labels) and any(
        "under-confident" in x for x in labels
    )
    assert "samples per bin" in labels and "accuracy" in labels
    # every bar colour of the diagrams is one the legend names
    from matplotlib.colors import to_hex

    legend_colors = {to_hex(h.get_facecolor()) for h in legend.legend_handles
                     if hasattr(h, "get_facecolor")}  # fmt: skip
    drawn = {to_hex(p.get_facecolor()) for ax in fig.axes for p in ax.patches}
    assert drawn <= legend_colors, drawn - legend_colors
    assert to_hex(RELIABILITY_COLORS["over"]) != to_hex(RELIABILITY_COLORS["under"])


def test_grid_title_is_not_clipped():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    tiles = [Tile(np.zeros((20, 20, 3), np.uint8), ["a_rather_long_file_name_0001.png",
                  "true: American black bear", "FULL: x", "fused: y"], True)] * 2  # fmt: skip
    fig = image_grid_figure(tiles, "FG_C ⊕ FULL vs FULL on test_id", size=64)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    box = fig.bbox
    for text in [fig._suptitle, *fig.axes[0].texts]:
        ext = text.get_window_extent(renderer)
        assert box.x0 - 1 <= ext.x0 and ext.x1 <= box.x1 + 1, text.get_text()
        assert box.y0 - 1 <= ext.y0 and ext.y1 <= box.y1 + 1, text.get_text()


def test_disagreements_are_sampled_across_classes():
    # 40 disagreements sorted by id: the first 30 are all class 0 (class folders in id order)
    labels = np.array([0] * 30 + [1] * 4 + [2] * 3 + [3] * 3)
    outcome = np.zeros(len(labels), int)
    outcome[[31, 35]] = 1  # the baseline right on two
    idx = np.arange(len(labels))
    shown = sample_across_classes(idx, labels, outcome, 12)
    assert len(shown) == 12 and len(set(shown.tolist())) == 12
    assert set(labels[shown].tolist()) == {0, 1, 2, 3}
    counts = np.bincount(labels[shown], minlength=4)
    assert counts.max() - counts.min() <= 1  # three of each class
    assert (np.diff(outcome[shown]) >= 0).all()  # fusion right first, then the baseline right
    assert list(sample_across_classes(idx[:5], labels, outcome, 12)) == [0, 1, 2, 3, 4]
    assert len(sample_across_classes(idx[:0], labels, outcome, 12)) == 0


def test_template_is_packaged_and_jinja2_declared():
    """``pip install .`` and a wheel carry the page template; jinja2 is a declared dependency."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (3.10: read by the wheel build)
    repo = Path(__file__).parents[1]
    project = tomllib.loads((repo / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["occam_l2r"]
    package = repo / "occam_l2r"
    templates = sorted(p.relative_to(package).as_posix()
                       for p in (package / "reporting" / "templates").iterdir() if p.is_file())  # fmt: skip
    assert templates and all(any(fnmatch.fnmatch(t, g) for g in patterns) for t in templates)
    assert any(re.match(r"jinja2\b", d, re.I) for d in project["project"]["dependencies"])
