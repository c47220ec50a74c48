"""``preview.html``: each image with its box and mask, its views and the decision.

One picture per image (PNG under ``preview/``, named by :func:`picture_name`: the image's
position and its sanitised name, so no two images share a file; embedded in the page by
:class:`occam_l2r.html_page.Page`): the upright image with the foreground mask tinted and
the crop box drawn, then every view the models saw; the caption gives the fused class, its
confidence, which view decided and the fallback reason. Error rows are listed in a table.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from occam_l2r.classify.engine import Classified
from occam_l2r.html_page import Page

#: side of each panel of a preview picture, in pixels
PANEL = 128
#: longest sanitised image name kept in a picture's file name
NAME_CHARS = 80


def picture_name(index: int, count: int, image_id: str) -> str:
    """The file name of the ``index``-th of ``count`` preview pictures, for ``image_id``.

    The zero-padded index makes it unique (``猫.png`` and ``犬.png``, ``a b.png`` and ``a_b.png``
    would share a sanitised name); the image id, without its extension and reduced to ASCII
    letters, digits, ``-``, ``_`` and ``.``, makes it readable: ``0003_a_b.png``.
    """
    width = max(4, len(str(max(count - 1, 0))))
    stem = image_id[: len(image_id) - len(Path(image_id).suffix)]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._")[:NAME_CHARS]
    return f"{index:0{width}d}_{safe or 'image'}.png"


def _panel(image: np.ndarray) -> Image.Image:
    im = Image.fromarray(image[..., :3])
    im.thumbnail((PANEL, PANEL))
    canvas = Image.new("RGB", (PANEL, PANEL), (255, 255, 255))
    canvas.paste(im, ((PANEL - im.width) // 2, (PANEL - im.height) // 2))
    return canvas


def overlay(image: np.ndarray, box: tuple[int, int, int, int] | None, mask: np.ndarray | None):
    """The image with the mask tinted red and the box drawn in green (either may be ``None``)."""
    out = image.astype(np.float32)
    if mask is not None:
        out[mask] = 0.55 * out[mask] + 0.45 * np.array([255, 0, 0], np.float32)
    im = Image.fromarray(out.astype(np.uint8))
    if box is not None:
        x0, y0, x1, y1 = box
        width = max(1, round(max(im.size) / 100))
        ImageDraw.Draw(im).rectangle([x0, y0, x1 - 1, y1 - 1], outline=(0, 200, 0), width=width)
    return np.asarray(im)


def write_preview(result: Classified, table: pd.DataFrame, output_dir: str | Path) -> Path:
    """Write ``<output_dir>/preview.html`` (and its pictures in ``preview/``)."""
    out = Path(output_dir)
    pics = out / "preview"
    pics.mkdir(parents=True, exist_ok=True)
    rows = table.set_index("image_id")
    page = Page("classify preview", out)
    page.heading("Images")
    for index, item in enumerate(result.items):
        assert item.image is not None
        dec = item.decomposition
        panels = [overlay(item.image, dec.box if dec else None, dec.mask if dec else None)]
        panels += [im for im, _ in item.views.values()]
        strip = Image.new("RGB", (PANEL * len(panels), PANEL), (255, 255, 255))
        for k, im in enumerate(panels):
            strip.paste(_panel(im), (k * PANEL, 0))
        png = pics / picture_name(index, len(result.items), item.image_id)
        strip.save(png)
        row = rows.loc[item.image_id]
        name = f" ({row['pred_name']})" if "pred_name" in row else ""
        why = f"; fell back: {row['fallback_reason']}" if row["fallback_reason"] else ""
        page.figure(
            png,
            f"**{item.image_id}**: class {row['pred']}{name}, confidence {row['confidence']:.3f},"
            f" decided by {row['decided_by']}{why}. Panels: image with box and mask, "
            + ", ".join(item.views),
        )
    if result.errors:
        page.heading("Errors")
        page.table(["image", "error"], [(e.image_id, e.error) for e in result.errors])
    return page.write(out / "preview.html")
