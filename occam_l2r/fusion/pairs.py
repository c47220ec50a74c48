"""A fused pair of inputs as a typed value, and the default pairs of a set of views.

- :class:`Pair`: two views fused (``FG_C+BG_S``, input 1 first: the robust one ⊕R trusts), or
  one view fused with itself across seeds (the ensemble ``FULL × 2``). Its text in files
  (``results.jsonl``, ``samples/``, ``weights/``, the tables) is :attr:`Pair.name` (``A+B``,
  ``Vx2``); :meth:`Pair.parse` reads it back, once, where files are read. :meth:`Pair.display`
  is its one display (``A ⊕ B``, ``V × 2``).
- :func:`default_pairs`: the pairs fused when a config names none (L2R²'s FG ⊕ FULL first).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from occam_l2r.views import role_of


@dataclass(frozen=True)
class Pair:
    """Two fused inputs: views ``first`` and ``second``, or with ``ensemble`` one view
    (``first == second``) with the run of the next seed.

    Attributes:
        first: input 1 (the robust one; ⊕R trusts it), e.g. ``FG_C``.
        second: input 2, e.g. ``BG_S`` or ``FULL``.
        ensemble: the same view across two seeds (``FULLx2``).
    """

    first: str
    second: str
    ensemble: bool = False

    @classmethod
    def of_ensemble(cls, view: str) -> Pair:
        """The ensemble of ``view`` with itself across seeds."""
        return cls(view, view, ensemble=True)

    @property
    def name(self) -> str:
        """Its text in files and tables' keys: ``A+B``, or ``Vx2`` for an ensemble."""
        return f"{self.first}x2" if self.ensemble else f"{self.first}+{self.second}"

    def __str__(self) -> str:
        return self.name

    def __iter__(self) -> Iterator[str]:
        """``a, b = pair`` (a config's ``(input 1, input 2)``)."""
        return iter((self.first, self.second))

    def display(self) -> str:
        """Its label in tables and figures: ``A ⊕ B``, or ``V × 2`` for an ensemble."""
        return f"{self.first} × 2" if self.ensemble else f"{self.first} ⊕ {self.second}"

    @property
    def input_names(self) -> tuple[str, str]:
        """The two inputs by name: ``(A, B)``, or ``(V, "V (next seed)")`` for an ensemble."""
        if self.ensemble:
            return self.first, f"{self.first} (next seed)"
        return self.first, self.second

    @classmethod
    def parse(cls, text: str) -> Pair:
        """The pair named ``text`` (:attr:`name`: ``A+B`` or ``Vx2``).

        Raises:
            ValueError: ``text`` is neither ``A+B`` of two names nor ``Vx2``.
        """
        text = str(text)
        first, plus, second = text.partition("+")
        if plus and first and second and "+" not in second:
            return cls(first, second)
        if not plus and text.endswith("x2") and len(text) > 2:
            return cls.of_ensemble(text.removesuffix("x2"))
        raise ValueError(f"{text!r} names no fused pair: write 'A+B' (two views) or 'Vx2'")


def default_pairs(views: Iterable[str]) -> list[Pair]:
    """The pairs fused when none are given: the first foreground view with FULL, then with every
    background view (in the given order; the roles of :func:`occam_l2r.views.role_of`); none
    without a foreground view. ``FULL, FG_C, BG_S`` gives ``FG_C+FULL``, ``FG_C+BG_S`` (L2R²'s
    headline FG ⊕ FULL first)."""
    views = [str(v) for v in views]
    fg = next((v for v in views if role_of(v) == "foreground"), None)
    if fg is None:
        return []
    full = [v for v in views if role_of(v) == "full"]
    return [Pair(fg, o) for o in full + [v for v in views if role_of(v) == "background"]]
