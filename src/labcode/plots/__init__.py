"""Figures of the book: one module per chapter concept, one house style (:mod:`.style`).

Every function takes computed results (tensors, dicts, dataclasses) and
returns a ``matplotlib.figure.Figure``; none samples, trains or changes
global matplotlib state.
"""

from .style import COLORS, SEQUENCE, new_figure, styled

__all__ = ["COLORS", "SEQUENCE", "new_figure", "styled"]
