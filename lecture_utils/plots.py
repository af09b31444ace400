"""Figures the notebooks share: image grids, training curves, robustness curves, distortion fields.

Each function returns a matplotlib Figure and leaves showing it to the caller
(``plt.show()`` in a notebook), so a figure can also be saved or re-rendered.
Two helpers for a notebook's own figures: ``band(ax, xs, runs, label)`` draws
runs over seeds as their mean with the min-max range shaded, and
``integer_ticks(ax)`` puts ticks on whole numbers only (epochs).
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


def band(ax, xs, runs, label, **style):
    """Runs over seeds on ``ax``: their mean as a line, the range between the lowest and the highest shaded.

    ``runs`` is one run (a list of y values, one per x) or a list of runs, one per seed; with one run the
    line is that run. ``style`` goes to ``ax.plot`` (``marker="."``, ``color=...``). The label says how many
    runs were averaged. Returns the line. Example::

        band(ax, range(1, epochs + 1), [[100 * h["val_error"] for h in hist] for hist in histories], "elastic")
    """
    xs = list(xs)
    try:
        ys = np.asarray(runs, dtype=float)
    except ValueError:
        raise ValueError("runs must be one run or a list of runs of equal length (one value per x)") from None
    ys = ys[None] if ys.ndim == 1 else ys
    if ys.ndim != 2 or ys.shape[1] != len(xs):
        raise ValueError(f"runs must be one run or a list of runs with one value per x ({len(xs)} x values), "
                         f"got shape {ys.shape}")
    (line,) = ax.plot(xs, ys.mean(axis=0), label=label if len(ys) == 1 else f"{label} (mean of {len(ys)})", **style)
    if len(ys) > 1:
        ax.fill_between(xs, ys.min(axis=0), ys.max(axis=0), color=line.get_color(), alpha=0.2, lw=0)
    return line


def integer_ticks(ax, axis="x"):
    """Ticks on whole numbers only on ``axis`` ("x", "y" or "both"): epochs 1, 2, 3, never 2.5. Returns ``ax``."""
    if axis not in ("x", "y", "both"):
        raise ValueError(f"axis must be 'x', 'y' or 'both', got {axis!r}")
    for name in ("x", "y") if axis == "both" else (axis,):
        getattr(ax, f"{name}axis").set_major_locator(mticker.MaxNLocator(integer=True))
    return ax


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
        band(ax, epochs, [[100 * h[key] for h in run] for run in runs], name, marker=".")
    ax.set_xlabel("epoch")
    integer_ticks(ax)
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
            band(ax, xs, [[100 * y for y in run] for run in _runs(ys)], name, marker="o", ms=3)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylim(0, 100)
        ax.grid(True, alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel(ylabel)
    axes[0, 0].legend(fontsize=8)  # every panel draws the same runs: one legend
    fig.tight_layout()
    return fig


def _nice_length(x):
    """A round arrow length (pixels) near ``x``: 0.1, 0.2, 0.5, 1, 2, 5, 10, ..."""
    if not np.isfinite(x) or x <= 0:
        return 1.0
    exponent = np.floor(np.log10(x))
    return float(min((1, 2, 5, 10), key=lambda m: abs(np.log(m * 10 ** exponent / x))) * 10 ** exponent)


def quiver_field(ax, field, image=None, step=2, key=None):
    """Arrows of a (2, H, W) pixel field (dy, dx) on ``ax``, drawn to scale (an arrow d pixels long spans d
    pixels), over ``image`` if given, with a key arrow of ``key`` pixels (default: a round length near the
    field's RMS). Returns the key's length."""
    dy, dx = field[0].detach().cpu().numpy(), field[1].detach().cpu().numpy()
    h, w = dy.shape
    ys, xs = np.mgrid[0:h, 0:w]
    if image is not None:
        ax.imshow(_as_image(image), cmap="gray", vmin=0, vmax=1, alpha=0.35)
    s = (slice(None, None, step), slice(None, None, step))
    # Image rows grow downwards, so a positive dy points down the screen.
    arrows = ax.quiver(xs[s], ys[s], dx[s], -dy[s], color="tab:red", angles="xy", scale_units="xy", scale=1,
                       width=0.006)
    if key is None:
        key = _nice_length(float(np.sqrt((dx ** 2 + dy ** 2).mean())))
    ax.quiverkey(arrows, 0.72, -0.07, key, f"{key:g} px", labelpos="E", coordinates="axes", fontproperties={"size": 8})
    ax.set_xlabel(" ", fontsize=8)  # keeps the key's row inside a figure saved with bbox_inches="tight"
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_aspect("equal")
    return key


def field_figure(image, field, distorted, step=2, title=None, key=None):
    """A distortion field three ways: arrows over the digit, the warped sampling grid, the result.

    ``field`` is (2, H, W) in pixels, (dy, dx): output pixel (y, x) takes the
    input's value at (y + dy, x + dx), so the grid shows where each pixel samples.
    The arrows are drawn to scale, with a key arrow of ``key`` pixels (default: a round length near the RMS).
    """
    dy, dx = field[0].cpu().numpy(), field[1].cpu().numpy()
    h, w = dy.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    ys, xs = ys.numpy(), xs.numpy()
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.5))
    quiver_field(axes[0], field, image, step, key)
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
    fig.tight_layout(rect=(0, 0.10, 1, 0.94 if title else 1))  # room for the key under the arrows, the title above
    return fig


def fields_figure(image, fields, distorted, titles, step=2, key=None):
    """Several fields for one image: a column each, the arrows (to scale, one key for all) over the distorted image.

    ``fields`` (N, 2, H, W) in pixels, ``distorted`` (N, C, H, W), ``titles`` one per column.
    """
    n = len(fields)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.2), squeeze=False)
    if key is None:
        key = _nice_length(float(fields.detach().cpu().pow(2).sum(1).mean().sqrt()))
    for i in range(n):
        quiver_field(axes[0, i], fields[i], image, step, key)
        axes[0, i].set_title(titles[i], fontsize=9)
        axes[1, i].imshow(_as_image(distorted[i]), cmap="gray", vmin=0, vmax=1)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("field (arrows to scale)", fontsize=9)
    axes[1, 0].set_ylabel("distorted", fontsize=9)
    fig.tight_layout()
    return fig


def paired_figure(results, panels=None, ylabel="test error (%)", lower_is_better=True):
    """Paired seeds: ``{condition: [one value per seed]}``, one line per seed joining its conditions.

    ``panels``: tuples of condition names, one panel each with its own y range (e.g. all three, then a
    close-up of two); default one panel of all. A panel shows the seeds all its conditions ran (the first
    ones: a condition run on fewer seeds shortens the panels it is in). In a panel of two conditions the lines
    are coloured by which way the seed went (which condition is better for it), and the legend counts them.
    The mean is the black bar. Returns the figure.
    """
    panels = [tuple(results)] if panels is None else [tuple(p) for p in panels]
    for p in panels:
        if len(p) < 2 or any(name not in results for name in p):
            raise ValueError(f"panel {p!r} must name at least 2 conditions of results: known are {', '.join(results)}")
    widths = [len(p) for p in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(1.3 * sum(widths) + 1.2 * len(panels), 3.6), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for ax, names in zip(axes[0], panels):
        common = min(len(results[name]) for name in names)
        values = np.asarray([list(results[name])[:common] for name in names], dtype=float)  # (conditions, seeds)
        xs = np.arange(len(names))
        first_better = values[0] < values[1] if lower_is_better else values[0] > values[1]  # per seed
        labelled = set()
        for s in range(values.shape[1]):
            color, label = "tab:gray", "one seed"
            if len(names) == 2:
                color = "tab:blue" if first_better[s] else "tab:orange"
                count = int(first_better.sum()) if first_better[s] else int((~first_better).sum())
                label = f"{names[0]} better: {count} seed(s)" if first_better[s] else \
                    f"{names[1]} better or tied: {count} seed(s)"
            ax.plot(xs, values[:, s], color=color, marker="o", ms=3, lw=1, alpha=0.8,
                    label=None if label in labelled else label)
            labelled.add(label)
        ax.plot(xs, values.mean(axis=1), color="black", marker="_", ms=22, mew=2, lw=0,
                label=f"mean of {values.shape[1]}")
        ax.set_xticks(xs, names)
        ax.set_xlim(-0.4, len(names) - 0.6)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_ylabel(ylabel)  # every panel: each has its own y range
    fig.tight_layout()
    return fig


def figure_png(fig, dpi=80):
    """The figure as PNG bytes (and closed), for widgets that redraw without flicker."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
