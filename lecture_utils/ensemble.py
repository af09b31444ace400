"""Ensembling: average the class probabilities (softmax outputs) of several trained models.

The lecture's last trick for ImageNet ("with ensembling, 3.57% top-5"): nets
that make different mistakes, averaged, make fewer. ``predict_probabilities``
runs one model over a data set once; ``ensemble_errors`` compares the members'
errors with that of their averaged probabilities (so several ensembles of the
same models need each model's forward passes only once); ``evaluate_ensemble``
does both for a list of models; ``ensemble_probabilities`` averages on one batch.
``ensemble_vs_members`` scores an ensemble against the baselines a fair comparison
needs: its average member, and the member one would pick on validation images.
"""

import torch
from torch import nn

from lecture_utils.device import get_device

__all__ = ["predict_probabilities", "ensemble_errors", "ensemble_vs_members", "evaluate_ensemble",
           "ensemble_probabilities"]


def _check_members(models):
    """The members as a list; TypeError/ValueError for an empty ensemble or a member that is not a model."""
    if isinstance(models, nn.Module):
        raise TypeError("models must be a list of models (an ensemble), got a single model: pass [model, ...]")
    models = list(models)
    if len(models) < 1:
        raise ValueError("an ensemble needs at least 1 model, got an empty list")
    for i, m in enumerate(models):
        if not isinstance(m, nn.Module):
            raise TypeError(f"ensemble member {i} is a {type(m).__name__}, not a torch.nn.Module")
    return models


def _check_scores(scores, i):
    if scores.ndim != 2:
        raise ValueError(f"ensemble member {i} gave outputs of shape {tuple(scores.shape)}: "
                         "an ensemble needs class scores of shape (N, classes)")


def _check_same_classes(probs):
    """ValueError if the members' (N, classes) outputs differ in their number of classes (or of images)."""
    for i, p in enumerate(probs[1:], 1):
        if p.shape[1] != probs[0].shape[1]:
            raise ValueError(f"ensemble members predict different numbers of classes: member 0 gives "
                             f"{probs[0].shape[1]}, member {i} gives {p.shape[1]}; averaging class "
                             "probabilities needs every member to predict the same classes")
        if p.shape[0] != probs[0].shape[0]:
            raise ValueError(f"ensemble members were run on different images: member 0 has {probs[0].shape[0]} "
                             f"predictions, member {i} has {p.shape[0]}")


@torch.no_grad()
def predict_probabilities(model, batches, device=None):
    """``(probabilities, labels)``: the softmax output (N, classes) of ``model`` on ``batches`` of (images, labels).

    The model runs in eval mode (its mode is restored afterwards); the results are on the CPU.
    """
    device = get_device(device)
    was_training = model.training
    probs, labels = [], []
    try:
        model.eval().to(device)
        for x, y in batches:
            scores = model(x.to(device)).float()
            _check_scores(scores, 0)
            probs.append(scores.softmax(1).cpu())
            labels.append(y.cpu())
    finally:
        model.train(was_training)
    if not probs:
        raise ValueError("predict_probabilities got no batches: the data set is empty")
    return torch.cat(probs), torch.cat(labels)


def ensemble_errors(member_probabilities, labels):
    """Errors of each member and of the average of their probabilities (each (N, classes)) against ``labels``.

    Returns ``{"member_errors": [...], "error": ensemble error, "best_member": index,
    "best_member_error": ..., "mean_member_error": ..., "n": images}`` (errors as fractions). The best member
    is picked on these same images, which flatters it; ``ensemble_vs_members`` picks on other images.
    """
    probs = list(member_probabilities)
    if not probs:
        raise ValueError("an ensemble needs at least 1 member, got no probabilities")
    for i, p in enumerate(probs):
        _check_scores(p, i)
    _check_same_classes(probs)
    labels = torch.as_tensor(labels)
    n, classes = probs[0].shape
    if labels.shape != (n,):
        raise ValueError(f"{tuple(labels.shape)} labels for {n} predictions: one label per image is needed")
    if n == 0:
        raise ValueError("ensemble_errors got no images")
    if int(labels.min()) < 0 or int(labels.max()) >= classes:
        raise ValueError(f"labels run from {int(labels.min())} to {int(labels.max())}, but the members predict "
                         f"{classes} classes (0 to {classes - 1})")
    stacked = torch.stack(probs)  # (members, N, classes)
    member_errors = [int((p.argmax(1) != labels).sum()) / n for p in stacked]
    best = min(range(len(probs)), key=member_errors.__getitem__)
    error = int((stacked.mean(0).argmax(1) != labels).sum()) / n
    return {"member_errors": member_errors, "error": error, "best_member": best,
            "best_member_error": member_errors[best], "mean_member_error": sum(member_errors) / len(member_errors),
            "n": n}


def ensemble_vs_members(member_probabilities, labels, n_validation):
    """The ensemble against fair baselines: its average member, and the member one would pick.

    The first ``n_validation`` images (validation images) pick the member with the fewest errors there;
    then everything is scored on the remaining images, which the pick has not seen. Returns
    ``ensemble_errors``' dict for the remaining images, plus ``"picked_member"`` and ``"picked_member_error"``.
    """
    probs = [torch.as_tensor(p) for p in member_probabilities]
    labels = torch.as_tensor(labels)
    n = len(labels)
    if isinstance(n_validation, bool) or not isinstance(n_validation, int) or not 1 <= n_validation < n:
        raise ValueError(f"n_validation must be an int from 1 to {n - 1} (the first images pick the member, "
                         f"the rest are scored), got {n_validation!r}")
    picked = ensemble_errors([p[:n_validation] for p in probs], labels[:n_validation])["best_member"]
    result = ensemble_errors([p[n_validation:] for p in probs], labels[n_validation:])
    result.update(picked_member=picked, picked_member_error=result["member_errors"][picked])
    return result


def evaluate_ensemble(models, batches, device=None):
    """Error of each model and of their softmax average over ``batches`` of (images, labels); see ``ensemble_errors``.

    ``batches`` is iterated once per model, so it must yield the same images in the same order each time
    (``DeviceBatches`` without shuffling does).
    """
    models = _check_members(models)
    outputs = [predict_probabilities(m, batches, device) for m in models]
    for i, (_, y) in enumerate(outputs[1:], 1):
        if len(y) == len(outputs[0][1]) and not torch.equal(y, outputs[0][1]):
            raise ValueError(f"the batches gave other labels to member {i} than to member 0: "
                             "they must yield the same images in the same order every time")
    return ensemble_errors([p for p, _ in outputs], outputs[0][1])


@torch.no_grad()
def ensemble_probabilities(models, images, device=None):
    """The average of the members' softmax outputs on ``images`` (N, C, H, W): a tensor (N, classes).

    Members run in eval mode for the call; their modes are restored afterwards.
    """
    models = _check_members(models)
    device = get_device(device)
    modes = [m.training for m in models]
    probs = []
    try:
        for i, m in enumerate(models):
            scores = m.eval().to(device)(images.to(device)).float()
            _check_scores(scores, i)
            probs.append(scores.softmax(1))
            _check_same_classes(probs)
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)
    return torch.stack(probs).mean(0)
