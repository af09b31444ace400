"""Failures made on purpose, for "When it does not work" (notebook 07b): a broken pipeline, a degenerate loss.

- ``ShuffledLabels``: training batches whose labels are permuted against their images, afresh every time (a
  loader that shuffles images and labels with different permutations). Nothing can be learned, not even by
  memorizing: the overfit-a-small-subset check fails on it.
- ``pull_only_loss``: an embedding loss that pulls images of the same class together and nothing else; a
  constant output minimizes it, so the parameters can collapse to one.
- ``contrastive_loss``: the fix (Hadsell, Chopra and LeCun 2006): pairs of different classes are also pushed at
  least ``margin`` apart, so a constant output is no longer a minimum.
- ``train_embedding``: SGD on such a loss (``fit`` trains with cross-entropy only); ``nearest_mean_accuracy``:
  how well an embedding classifies, by the nearest class mean of the training images.
"""

import torch

__all__ = ["ShuffledLabels", "pull_only_loss", "contrastive_loss", "train_embedding", "embed",
           "nearest_mean_accuracy"]


class ShuffledLabels:
    """Wrap training batches so that every batch's labels are permuted against its images, afresh each time."""

    def __init__(self, batches, seed=0):
        if not hasattr(batches, "__iter__") or not hasattr(batches, "__len__"):
            raise TypeError(f"batches must be iterable batches with a length (e.g. DeviceBatches), "
                            f"got {type(batches).__name__}")
        self.batches, self.generator = batches, torch.Generator().manual_seed(seed)

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for x, y in self.batches:
            yield x, y[torch.randperm(len(y), generator=self.generator).to(y.device)]


def _pairs(z, y):
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or len(z) < 2:
        raise ValueError(f"z must be a batch of embeddings (n >= 2, dims), got "
                         f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}")
    if not isinstance(y, torch.Tensor) or y.shape != (len(z),):
        raise ValueError(f"y must hold one label per embedding ({len(z)}), got "
                         f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
    same = (y[:, None] == y[None, :]).to(z.dtype)
    return same, torch.cdist(z, z)


def pull_only_loss(z, y):
    """mean over same-class pairs of ||z_i - z_j||^2: nothing pushes classes apart, a constant z is a minimum."""
    same, d = _pairs(z, y)
    return (d ** 2 * same).sum() / same.sum()


def contrastive_loss(z, y, margin=1.0):
    """mean over all n x n pairs of [y_i = y_j] d_ij^2 + [y_i != y_j] max(0, margin - d_ij)^2, d_ij = ||z_i - z_j||."""
    same, d = _pairs(z, y)
    return (same * d ** 2 + (1 - same) * torch.relu(margin - d) ** 2).mean()


def train_embedding(net, batches, loss_fn, *, epochs, lr, momentum=0.9, device=None):
    """SGD with momentum on ``loss_fn(net(x), y)`` over ``batches`` for ``epochs``; returns the per-epoch mean loss."""
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    net.to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    losses = []
    for _ in range(epochs):
        total, steps = 0.0, 0
        for x, y in batches:
            loss = loss_fn(net(x.to(device)), y.to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(total / steps)
    return losses


def embed(net, images, device=None, batch_size=1000):
    """The net's outputs for uint8 (or float) ``images``, in eval mode, without gradients."""
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].to(device)
            out.append(net(x.float() / 255 if x.dtype == torch.uint8 else x))
    return torch.cat(out)


def nearest_mean_accuracy(net, train_images, train_labels, test_images, test_labels, device=None):
    """Accuracy of the embedding: each test image gets the class whose mean training embedding is nearest."""
    z, zt = embed(net, train_images, device), embed(net, test_images, device)
    labels = train_labels.to(z.device)
    classes = torch.unique(labels)
    means = torch.stack([z[labels == c].mean(0) for c in classes])
    predicted = classes[torch.cdist(zt, means).argmin(1)]
    return (predicted.cpu() == test_labels.cpu()).double().mean().item()
