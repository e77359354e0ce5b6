"""PNG figures for run metadata: confusion matrices and fusion C-grid curves.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend switch, no display).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _png_bytes(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def confusion_png(matrix: np.ndarray, labels: Sequence[str], title: str) -> bytes:
    """Confusion matrix (rows true, columns predicted) as PNG: cells print counts, colour is the row share.

    Colouring by row share (recall) keeps rare classes readable next to frequent ones.
    """
    matrix = np.asarray(matrix)
    if matrix.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion matrix shape {matrix.shape} does not match {len(labels)} labels")
    row_totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, row_totals, out=np.zeros(matrix.shape, dtype=np.float64), where=row_totals > 0)

    size = 1.0 + 0.6 * len(labels)
    figure = Figure(figsize=(size + 1.5, size))
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="share of true class")
    ticks = np.arange(len(labels))
    axes.set_xticks(ticks, labels=list(labels), rotation=45, ha="right")
    axes.set_yticks(ticks, labels=list(labels))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            colour = "white" if shares[i, j] > 0.5 else "black"
            axes.text(j, i, str(int(matrix[i, j])), ha="center", va="center", color=colour, fontsize=8)
    return _png_bytes(figure)


def grid_curve_png(grid: Sequence[tuple[float, float]], chosen_C: float, metric_name: str) -> bytes:
    """Development score against C (log x axis) as PNG, with the chosen C marked."""
    if len(grid) == 0:
        raise ValueError("grid is empty: nothing to plot")
    points = sorted((float(c), float(score)) for c, score in grid)
    cs, scores = zip(*points, strict=True)

    figure = Figure(figsize=(6.0, 4.0))
    axes = figure.add_subplot()
    axes.plot(cs, scores, marker="o")
    axes.set_xscale("log")
    axes.axvline(chosen_C, color="tab:red", linestyle="--", label=f"chosen C = {chosen_C:.3g}")
    axes.set_xlabel("C (inverse regularisation strength)")
    axes.set_ylabel(f"development {metric_name}")
    axes.set_title(f"fusion: development {metric_name} over C")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    return _png_bytes(figure)
