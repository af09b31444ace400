"""Self-checks of notebooks/01_invariance_and_augmentation.ipynb: invariance and local contrast normalization.

Exercises: ``check_receptive_field`` (1.1), ``check_local_contrast_normalization`` (1.2), ``check_rotated_accuracy`` (1.3).
"""

import torch
from torch import nn

from ._core import ExerciseError, _keeps_rng, _correct, _wrong, _number, _tensor, _function, _which, _close, _int_answer


def _lcn_images():
    """Two 1 x 20 x 20 test images: a textured square on a flat background, one of them dimmed and brightened."""
    g = torch.Generator().manual_seed(0)
    x = torch.full((2, 1, 20, 20), 0.2)
    x[:, :, 5:15, 5:15] += 0.6 * torch.rand(2, 1, 10, 10, generator=g)
    x[1] = 0.3 * x[1] + 0.5
    return x


@_keeps_rng
def check_local_contrast_normalization(student_fn, images=None, sigma=2.0):
    """Exercise 1.2: local contrast normalization by hand, ``student_fn(images, sigma)``.

    Reference: ``lecture_utils.augment.local_contrast_normalize`` (Jarrett et al. 2009), with G the Gaussian
    smoothing of width sigma (``gaussian_smooth``) over the channel mean:
        v = x - G(x),   s = sqrt(G(v^2)),   y = v / max(s, mean of s over the image)
    """
    from lecture_utils.augment import gaussian_smooth, local_contrast_normalize

    x = _lcn_images() if images is None else images.detach().cpu()
    got = _tensor(_function(student_fn, "your LCN function")(x.clone(), sigma), "the normalized images", x.shape)
    ref = local_contrast_normalize(x, sigma).double()
    if _close(got, ref, 1e-4):
        return _correct(f"your LCN matches local_contrast_normalize (largest difference {(got - ref).abs().max():.1e})")
    xd = x.double()
    v = xd - gaussian_smooth(xd.mean(1, keepdim=True), sigma)
    s = gaussian_smooth((v * v).mean(1, keepdim=True), sigma).clamp_min(0).sqrt()
    var_xx = gaussian_smooth(xd * xd, sigma) - gaussian_smooth(xd, sigma) ** 2
    hint = _which(got, [
        (v, "you subtracted the local mean; now divide by the local standard deviation s"),
        (v / s.clamp_min(1e-4), "floor the divisor at the mean of s over the image, max(s, mean(s)): "
                                "without it, the flat background is blown up to noise"),
        (v / s.mean((2, 3), keepdim=True), "divide by max(s, mean(s)), the local std floored at its mean, "
                                           "not by the mean alone"),
        ((xd - xd.mean((1, 2, 3), True)) / xd.std((1, 2, 3), keepdim=True), "normalize locally: the mean and std "
                                                                         "are Gaussian-weighted around each pixel"),
        (v / torch.maximum(var_xx.clamp_min(0).sqrt(), var_xx.clamp_min(0).sqrt().mean((2, 3), True)),
         "the local std is sqrt(G(v^2)) of the mean-subtracted image v, not sqrt(G(x^2) - G(x)^2)"),
    ], tol=1e-3)
    _wrong("local_contrast_normalize(images, sigma)", f"a largest difference of {(got - ref).abs().max():.3g}",
           hint or "subtract G(x), the Gaussian-weighted local mean (gaussian_smooth(x, sigma), which reflects "
                   "the image at its edges), then divide by max(s, mean of s), with s = sqrt(G(v^2))")


LENET_LAYERS = (("conv", 5, 1), ("pool", 2, 2), ("conv", 5, 1), ("pool", 2, 2))


def _measured_receptive_field(layers):
    """Side of the input region that one output unit of ``layers`` depends on, read off a gradient."""
    size = 1
    for _, k, s in layers:
        size = size * s + k  # more than enough input for a central output unit
    size = 3 * size
    modules = []
    for kind, k, s in layers:
        if kind == "conv":
            conv = nn.Conv2d(1, 1, k, s, bias=False)
            nn.init.ones_(conv.weight)
            modules.append(conv)
        elif kind == "pool":
            modules.append(nn.AvgPool2d(k, s))  # max-pool's gradient reaches one input only: use the window
        else:
            raise ExerciseError(f"layers: kind must be 'conv' or 'pool', got {kind!r}")
    x = torch.ones(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    out = nn.Sequential(*modules).double()(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = (x.grad[0, 0] != 0).any(1).nonzero()
    return int(rows.max() - rows.min() + 1)


@_keeps_rng
def check_receptive_field(answer, layers=LENET_LAYERS):
    """Exercise 1.1: the receptive field (side, in input pixels) of one unit after ``layers``.

    ``layers``: (kind, kernel, stride) per layer, kind "conv" or "pool"; default LeNet's conv5-pool2-conv5-pool2.
    By hand: r = 1 + sum over layers of (kernel - 1) * (product of the strides of the layers before it).
    Reference: measured, the extent of the input that the gradient of one output unit reaches (torch's autograd).
    """
    got = _int_answer(answer, "the receptive field")
    ref = _measured_receptive_field(layers)
    if got == ref:
        return _correct(f"one unit after these {len(layers)} layers sees {ref} x {ref} input pixels")
    no_strides = 1 + sum(k - 1 for _, k, _ in layers)
    hint = _which(got, [(no_strides, "a layer after a stride-s layer steps s input pixels per unit: multiply "
                                     "each (kernel - 1) by the product of the strides before it"),
                        (ref * ref, "give the side of the square, not its area")])
    _wrong(f"{ref} pixels", got, hint or "r = 1 + sum (kernel - 1) * (product of the earlier strides)")


@_keeps_rng
def check_rotated_accuracy(answer, model, images, labels, angle):
    """Exercise 1.3: the accuracy (a fraction) of ``model`` on ``images`` rotated by ``angle`` degrees.

    Reference: recomputed here with ``lecture_utils.augment.affine(x, angle=angle)`` on x = images (uint8 divided
    by 255), the model in eval mode, prediction = argmax. Within 1 point (a GPU's autocast may flip a few digits).
    """
    from lecture_utils.augment import affine

    got = _number(answer, "the accuracy")
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    correct = {0.0: 0, angle: 0}
    try:
        model.eval()
        with torch.no_grad():
            for start in range(0, len(labels), 1000):
                x = images[start:start + 1000].to(device)
                x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
                y = torch.as_tensor(labels[start:start + 1000]).to(device)
                for a in correct:
                    correct[a] += int((model(affine(x, angle=a) if a else x).argmax(1) == y).sum())
    finally:
        model.train(was_training)
    ref, unrotated = correct[angle] / len(labels), correct[0.0] / len(labels)
    if abs(got - ref) <= 0.01:
        return _correct(f"accuracy {100 * ref:.1f}% at {angle:g} degrees (unrotated: {100 * unrotated:.1f}%)")
    hint = _which(got, [(100 * ref, "give a fraction between 0 and 1, not a percentage"),
                        (1 - ref, "that is the error; the accuracy is 1 - error"),
                        (unrotated, "that is the accuracy on the unrotated images: rotate them with "
                                    "affine(x, angle=angle) before the model sees them")], tol=0.01)
    _wrong(f"{ref:.4f}", f"{got:.4f}", hint or "rotate with affine(x, angle=angle) on images in [0, 1] "
                                              "(uint8 / 255), put the model in eval mode, compare argmax with labels")
