"""Figures the notebooks share: image grids, training curves, robustness curves, distortion fields.

Each function returns a matplotlib Figure and leaves showing it to the caller
(``plt.show()`` in a notebook), so a figure can also be saved or re-rendered.
"""

import io

import matplotlib.pyplot as plt
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


def history_figure(histories, key="val_error", ylabel="test error (%)", title=None):
    """``{name: History}`` as one curve per run of ``key`` (in %) against the epoch."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, history in histories.items():
        ax.plot([h["epoch"] for h in history], [100 * h[key] for h in history], marker=".", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def curves_figure(panels, ylabel="test accuracy (%)", ncols=None):
    """Robustness curves: ``{panel title: (x label, x values, {run name: accuracies})}``, one panel each."""
    ncols = ncols or len(panels)
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 3.0 * nrows), squeeze=False)
    for ax, (title, (xlabel, xs, runs)) in zip(axes.flat, panels.items()):
        for name, ys in runs.items():
            ax.plot(xs, [100 * y for y in ys], marker="o", ms=3, label=name)
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
