"""A self-contained HTML page: headings, paragraphs, tables and PNG figures embedded as base64.

:class:`Page` collects the blocks of a page in order (the report, ``classify``'s preview) and :meth:`Page.write` writes one HTML
file (atomically) that needs nothing beside it: every figure is inlined as a ``data:`` URI and
also kept as a PNG file, whose relative path each figure's caption links to. Tables keep the
cells as given (``**bold**`` of the Markdown tables is shown bold); a table read from a file
carries that file's name in ``data-source``.

The page is rendered by the jinja2 template ``occam_l2r/reporting/templates/page.html.j2``
(autoescaped; loaded by path through :class:`jinja2.PackageLoader`, so ``classify`` imports
nothing of :mod:`occam_l2r.reporting`). The style keeps a 1400-pixel window free of horizontal
overflow: table cells do not wrap (``value ± std`` stays on one line; only a row's label may),
a table wider than the page scrolls inside its own box, figures shrink to the page's width.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from occam_l2r.store_files import atomic_write

#: the template of every page, under ``occam_l2r/`` (packaged as package data)
TEMPLATE = ("reporting/templates", "page.html.j2")

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1360px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; overflow-wrap: anywhere; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
p, figcaption, caption { overflow-wrap: anywhere; }
.table-wrap { max-width: 100%; overflow-x: auto; margin: 0.8em 0; }
table { border-collapse: collapse; font-size: 0.8em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
td { white-space: nowrap; }
td:first-child { white-space: normal; min-width: 10em; }
th:first-child, td:first-child { text-align: left; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 4px 0; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; box-sizing: border-box;
                border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; } .note { color: #8a5a00; }
nav a { display: inline-block; margin-right: 1em; white-space: nowrap; }
"""


def _cell(text: object) -> str:
    """Escape a cell; ``**x**`` becomes bold."""
    escaped = html.escape(str(text))
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


@cache
def _template() -> Any:
    """The page template (jinja2 is imported on the first page written)."""
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("occam_l2r", TEMPLATE[0]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["cell"] = lambda text: Markup(_cell(text))
    return env.get_template(TEMPLATE[1])


class Page:
    """The blocks of one HTML report, in order.

    Args:
        title: the page title (``<h1>``).
        base: the folder the HTML file is written to (figure links are relative to it).
    """

    def __init__(self, title: str, base: str | Path) -> None:
        self.title = title
        self.base = Path(base)
        self.blocks: list[dict[str, Any]] = []
        self.sections: list[tuple[str, str]] = []
        self.figures: list[Path] = []

    def heading(self, text: str) -> None:
        """Start a section (listed in the page's table of contents)."""
        slug = _slug(text)
        self.sections.append((slug, text))
        self.blocks.append({"kind": "heading", "slug": slug, "text": text})

    def paragraph(self, text: str, note: bool = False) -> None:
        """A paragraph; ``note`` marks what is missing or approximate."""
        self.blocks.append({"kind": "paragraph", "text": str(text), "note": note})

    def table(
        self,
        header: Sequence[str],
        rows: Sequence[Sequence[object]],
        caption: str = "",
        source: str = "",
    ) -> None:
        """A table of cells shown as given."""
        self.blocks.append({"kind": "table", "header": [str(h) for h in header],
                            "rows": [[str(c) for c in r] for r in rows], "caption": caption,
                            "source": source})  # fmt: skip

    def dataframe(self, df: pd.DataFrame, caption: str = "", source: str = "") -> None:
        """A DataFrame as a table (its columns as the header)."""
        self.table([str(c) for c in df.columns], df.astype(str).values.tolist(), caption, source)

    def figure(self, png: str | Path, caption: str = "") -> None:
        """A PNG embedded as base64, with a caption linking to the file."""
        png = Path(png)
        self.figures.append(png)
        try:
            rel = png.resolve().relative_to(self.base.resolve()).as_posix()
        except ValueError:
            rel = png.as_posix()
        self.blocks.append({
            "kind": "figure", "alt": png.stem, "name": png.name, "href": rel, "caption": caption,
            "data": base64.b64encode(png.read_bytes()).decode("ascii"),
        })  # fmt: skip

    def render(self) -> str:
        """The whole page as one string."""
        return _template().render(
            title=self.title, style=STYLE, sections=self.sections, blocks=self.blocks
        )

    def write(self, path: str | Path) -> Path:
        """Write the page atomically (UTF-8, through a temporary file and a rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = self.render()
        return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
