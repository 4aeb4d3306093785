"""Training plots written next to checkpoints (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_KEYS: tuple[str, ...] = ("loss", "ce", "mse", "kl")
"""The SFT curves: total loss and its three terms."""


def plot_training_log(
    log_history: Sequence[dict[str, Any]], path: str | Path, keys: Sequence[str] = DEFAULT_KEYS
) -> Path:
    """Plot each of ``keys`` against the optimizer step from a ``Trainer``'s ``state.log_history``; returns ``path``.

    One panel per key that was logged at least once; the file is a PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [k for k in keys if any(k in entry for entry in log_history)]
    fig, axes = plt.subplots(1, max(len(present), 1), figsize=(4 * max(len(present), 1), 3), squeeze=False)
    for ax, key in zip(axes[0], present, strict=False):
        points = [(e["step"], e[key]) for e in log_history if key in e and "step" in e]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=2)
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
