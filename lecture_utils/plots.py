"""Figures the notebooks share: image grids, training curves, robustness curves, distortion fields.

Each function returns a matplotlib Figure and leaves showing it to the caller
(``plt.show()`` in a notebook), so a figure can also be saved or re-rendered.
"""

import io

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import torch


def _as_image(img):
    """(C, H, W) tensor (uint8 or float) -> array matplotlib shows: (H, W) gray or (H, W, 3) color."""
    img = img.detach().cpu()
    img = img.float() / 255 if img.dtype == torch.uint8 else img.float()
    img = img.clamp(0, 1)
    return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()


def image_grid(images, titles=None, ncols=8, size=1.2, row_labels=None):
    """Images (N, C, H, W) in a grid, optionally titled, with a label at the start of each row."""
    n = len(images)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 1.1), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(_as_image(images[i]), cmap="gray", vmin=0, vmax=1)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    for r, label in enumerate(row_labels or []):
        axes[r, 0].set_ylabel(label, fontsize=9)
    fig.tight_layout()
    return fig


def _runs(value):
    """One run or a list of runs (one per seed) -> a list of runs."""
    return list(value) if value and isinstance(value, (list, tuple)) and isinstance(value[0], (list, tuple)) \
        else [value]


def _band(ax, xs, runs, label, **style):
    """The mean of ``runs`` (rows of y values, one per seed) as a line; with several, their range shaded."""
    ys = np.asarray(runs, dtype=float)
    (line,) = ax.plot(xs, ys.mean(axis=0), label=label if len(ys) == 1 else f"{label} (mean of {len(ys)})", **style)
    if len(ys) > 1:
        ax.fill_between(xs, ys.min(axis=0), ys.max(axis=0), color=line.get_color(), alpha=0.2, lw=0)
    return line


def history_figure(histories, key="val_error", ylabel="test error (%)", title=None):
    """``{name: History or [History per seed]}`` as curves of ``key`` (in %) against the epoch.

    Several seeds: their mean, with the range between seeds shaded. The axis
    is logarithmic above 0.1% and linear below (symlog), so a run that reaches
    0% error stays on the plot instead of vanishing from a log axis.
    """
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, value in histories.items():
        runs = _runs(value)
        epochs = [h["epoch"] for h in runs[0]]
        _band(ax, epochs, [[100 * h[key] for h in run] for run in runs], name, marker=".")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_yscale("symlog", linthresh=0.1, linscale=0.5)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def curves_figure(panels, ylabel="test accuracy (%)", ncols=None):
    """Robustness curves: ``{panel title: (x label, x values, {run name: accuracies})}``, one panel each.

    A run's accuracies are one list (a value per x) or a list of such lists,
    one per seed: then the mean is drawn, with the range between seeds shaded.
    """
    ncols = ncols or len(panels)
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 3.0 * nrows), squeeze=False)
    for ax, (title, (xlabel, xs, runs)) in zip(axes.flat, panels.items()):
        for name, ys in runs.items():
            _band(ax, xs, [[100 * y for y in run] for run in _runs(ys)], name, marker="o", ms=3)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylim(0, 100)
        ax.grid(True, alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    axes[0, 0].set_ylabel(ylabel)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def field_figure(image, field, distorted, step=2, title=None):
    """A distortion field three ways: arrows over the digit, the warped sampling grid, the result.

    ``field`` is (2, H, W) in pixels, (dy, dx): output pixel (y, x) takes the
    input's value at (y + dy, x + dx), so the grid shows where each pixel samples.
    """
    dy, dx = field[0].cpu().numpy(), field[1].cpu().numpy()
    h, w = dy.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    ys, xs = ys.numpy(), xs.numpy()
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.5))
    axes[0].imshow(_as_image(image), cmap="gray", vmin=0, vmax=1, alpha=0.35)
    s = (slice(None, None, step), slice(None, None, step))
    # Image rows grow downwards, so a positive dy points down the screen.
    axes[0].quiver(xs[s], ys[s], dx[s], -dy[s], color="tab:red", angles="xy", scale_units="xy", scale=1, width=0.006)
    axes[0].set_title("displacement field (pixels)")
    sy, sx = ys + dy, xs + dx
    for r in range(0, h, step):
        axes[1].plot(sx[r], sy[r], color="tab:blue", lw=0.7)
    for c in range(0, w, step):
        axes[1].plot(sx[:, c], sy[:, c], color="tab:blue", lw=0.7)
    axes[1].set_xlim(-0.5, w - 0.5)
    axes[1].set_ylim(h - 0.5, -0.5)
    axes[1].set_aspect("equal")
    axes[1].set_title("where each pixel samples from")
    axes[2].imshow(_as_image(distorted), cmap="gray", vmin=0, vmax=1)
    axes[2].set_title("distorted image")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def figure_png(fig, dpi=80):
    """The figure as PNG bytes (and closed), for widgets that redraw without flicker."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
