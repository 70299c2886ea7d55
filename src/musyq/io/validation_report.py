"""The HTML report of a validation: the figures as a table, and scatter, residual histogram and APU plots
(matplotlib, drawn off-screen and embedded, so the file stands alone)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: render to memory

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from numpy.typing import NDArray  # noqa: E402


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _scatter(estimate: NDArray[np.float64], reference: NDArray[np.float64], tolerance: NDArray[np.float64],
             product: str, reference_name: str) -> str:
    figure, axes = plt.subplots(figsize=(4.6, 4.4))
    low = float(min(estimate.min(), reference.min()))
    high = float(max(estimate.max(), reference.max()))
    line = np.linspace(low, high, 50)
    order = np.argsort(reference)
    axes.fill_between(reference[order], (reference - tolerance)[order], (reference + tolerance)[order],
                      color="tab:green", alpha=0.15, label="requirement")
    axes.plot(line, line, "k--", lw=1, label="1:1")
    axes.scatter(reference, estimate, s=8 if reference.size > 200 else 18, alpha=0.6)
    axes.set_xlabel(f"{reference_name}")
    axes.set_ylabel(f"{product} (musyq)")
    axes.legend(loc="upper left", fontsize=8)
    return _png(figure)


def _histogram(residual: NDArray[np.float64], product: str) -> str:
    figure, axes = plt.subplots(figsize=(4.6, 3.4))
    axes.hist(residual, bins=min(40, max(8, residual.size // 5)), color="tab:blue", alpha=0.8)
    axes.axvline(0, color="k", lw=1)
    axes.set_xlabel(f"{product} - reference")
    axes.set_ylabel("matches")
    return _png(figure)


def _apu(bins: list[dict[str, float]], product: str) -> str:
    figure, axes = plt.subplots(figsize=(4.6, 3.4))
    centres = [b["centre"] for b in bins]
    for key, style in (("accuracy", "o-"), ("precision", "s-"), ("uncertainty", "^-")):
        axes.plot(centres, [b[key] for b in bins], style, label=key)
    axes.axhline(0, color="k", lw=0.8)
    axes.set_xlabel("reference (bin mean)")
    axes.set_ylabel(f"{product} APU")
    axes.legend(fontsize=8)
    return _png(figure)


def write_validation_report(out_dir: Path, title: str, figures: dict[str, object], estimate: NDArray[np.float64],
                            reference: NDArray[np.float64], tolerance: NDArray[np.float64],
                            bins: list[dict[str, float]], product: str, reference_name: str) -> Path:
    """``report.html`` and ``validation.json`` in ``out_dir``, written through temporary names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in figures.items() if not isinstance(v, (list, dict)))
    plots = [_scatter(estimate, reference, tolerance, product, reference_name), _histogram(estimate - reference, product)]
    if bins:
        plots.append(_apu(bins, product))
    images = "".join(f"<img alt='plot' src='data:image/png;base64,{p}'>" for p in plots)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}th,td{padding:2px 10px;"
            "text-align:left;border-bottom:1px solid #ddd}img{margin:8px;border:1px solid #ccc}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><table>{rows}</table><div>{images}</div></body></html>")
    report = out_dir / "report.html"
    for path, text in ((report, page), (out_dir / "validation.json", json.dumps(figures, indent=1))):
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(text)
        partial.replace(path)
    return report
