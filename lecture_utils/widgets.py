"""Interactive explorers: sliders above a figure that redraws as they move.

The figure is an ordinary display output updated in place (``display_id``),
not a picture inside a widget: a batch run (papermill, nbval) that cannot
move a slider still keeps the figure for the default values, and GitHub
shows it.
"""

import torch

from lecture_utils.augment import random_displacement_field, warp
from lecture_utils.plots import field_figure, figure_png


def distortion_figure_png(image, alpha, sigma, seed):
    """PNG of one digit's elastic distortion field (Simard et al. 2003) for these values."""
    generator = torch.Generator().manual_seed(int(seed))
    h, w = image.shape[-2:]
    field = random_displacement_field(1, h, w, alpha, sigma, generator=generator)
    distorted = warp(image.unsqueeze(0).float() / 255 if image.dtype == torch.uint8 else image.unsqueeze(0), field)
    rms = field.pow(2).mean().sqrt().item()  # per axis, over the image
    title = f"alpha = {alpha:g} px, sigma = {sigma:g} px, seed = {int(seed)}: RMS displacement {rms:.2f} px"
    return figure_png(field_figure(image, field[0], distorted[0], title=title))


def elastic_explorer(images, alpha=34.0, sigma=4.0, seed=0, index=0):
    """Sliders for alpha, sigma, seed and the digit; the field, warped grid and distorted digit follow them.

    Returns the controls' ``VBox`` (already displayed) so a caller or a test can move the sliders.
    """
    import ipywidgets as widgets
    from IPython.display import Image, display

    style = {"description_width": "80px"}
    layout = widgets.Layout(width="420px")
    controls = {
        "alpha": widgets.FloatSlider(value=alpha, min=0.0, max=80.0, step=2.0, description="alpha (px)",
                                     style=style, layout=layout, continuous_update=False),
        "sigma": widgets.FloatSlider(value=sigma, min=0.5, max=12.0, step=0.5, description="sigma (px)",
                                     style=style, layout=layout, continuous_update=False),
        "seed": widgets.IntSlider(value=seed, min=0, max=99, description="seed", style=style, layout=layout,
                                  continuous_update=False),
        "index": widgets.IntSlider(value=index, min=0, max=len(images) - 1, description="digit", style=style,
                                   layout=layout, continuous_update=False),
    }

    def render():
        v = {k: c.value for k, c in controls.items()}
        return Image(distortion_figure_png(images[v["index"]], v["alpha"], v["sigma"], v["seed"]), format="png")

    box = widgets.VBox(list(controls.values()))
    display(box)
    handle = display(render(), display_id=True)
    for control in controls.values():
        control.observe(lambda change: handle.update(render()), names="value")
    return box
