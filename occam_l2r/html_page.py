"""A self-contained HTML page: headings, paragraphs, tables and PNG figures embedded as base64.

:class:`Page` collects the blocks of a page in order (the report, ``classify``'s preview) and :meth:`Page.write` writes one HTML
file (atomically) that needs nothing beside it: every figure is inlined as a ``data:`` URI and
also kept as a PNG file, whose relative path each figure's caption links to. Tables keep the
cells as given (``**bold**`` of the Markdown tables is shown bold); a table read from a file
carries that file's name in ``data-source``.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from occam_l2r.store_files import atomic_write

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 4px 0; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; } .note { color: #8a5a00; }
nav a { margin-right: 1em; }
"""


def _cell(text: object) -> str:
    """Escape a cell; ``**x**`` becomes bold."""
    escaped = html.escape(str(text))
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


class Page:
    """The blocks of one HTML report, in order.

    Args:
        title: the page title (``<h1>``).
        base: the folder the HTML file is written to (figure links are relative to it).
    """

    def __init__(self, title: str, base: str | Path) -> None:
        self.title = title
        self.base = Path(base)
        self.blocks: list[str] = []
        self.sections: list[tuple[str, str]] = []
        self.figures: list[Path] = []

    def heading(self, text: str) -> None:
        """Start a section (listed in the page's table of contents)."""
        slug = _slug(text)
        self.sections.append((slug, text))
        self.blocks.append(f'<h2 id="{slug}">{html.escape(text)}</h2>')

    def paragraph(self, text: str, note: bool = False) -> None:
        """A paragraph; ``note`` marks what is missing or approximate."""
        cls = ' class="note"' if note else ""
        self.blocks.append(f"<p{cls}>{_cell(text)}</p>")

    def table(
        self,
        header: Sequence[str],
        rows: Sequence[Sequence[object]],
        caption: str = "",
        source: str = "",
    ) -> None:
        """A table of cells shown as given."""
        attr = f' data-source="{html.escape(source)}"' if source else ""
        out = [f"<table{attr}>"]
        if caption:
            out.append(f"<caption>{_cell(caption)}</caption>")
        out.append("<tr>" + "".join(f"<th>{_cell(h)}</th>" for h in header) + "</tr>")
        out += ["<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in r) + "</tr>" for r in rows]
        out.append("</table>")
        self.blocks.append("\n".join(out))

    def dataframe(self, df: pd.DataFrame, caption: str = "", source: str = "") -> None:
        """A DataFrame as a table (its columns as the header)."""
        self.table([str(c) for c in df.columns], df.astype(str).values.tolist(), caption, source)

    def figure(self, png: str | Path, caption: str = "") -> None:
        """A PNG embedded as base64, with a caption linking to the file."""
        png = Path(png)
        self.figures.append(png)
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        try:
            rel = png.resolve().relative_to(self.base.resolve()).as_posix()
        except ValueError:
            rel = png.as_posix()
        link = f' (<a href="{html.escape(rel)}">{html.escape(png.name)}</a>)'
        self.blocks.append(
            f'<figure><img alt="{html.escape(png.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_cell(caption)}{link}</figcaption></figure>"
        )

    def render(self) -> str:
        """The whole page as one string."""
        nav = " ".join(f'<a href="#{s}">{html.escape(t)}</a>' for s, t in self.sections)
        head = (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head><body>"
        )
        body = [f"<h1>{html.escape(self.title)}</h1>", f"<nav>{nav}</nav>", *self.blocks]
        return head + "\n" + "\n".join(body) + "\n</body></html>\n"

    def write(self, path: str | Path) -> Path:
        """Write the page atomically (UTF-8, through a temporary file and a rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = self.render()
        return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
