"""Ensembles average the members' softmax outputs; members must agree on the classes."""

import pytest
import torch
from torch import nn

from lecture_utils.ensemble import (ensemble_errors, ensemble_probabilities, ensemble_vs_members, evaluate_ensemble,
                                    predict_probabilities)
from lecture_utils.models import cifar_resnet


class FixedLogits(nn.Module):
    """A 'model' that returns row i of ``logits`` for an input whose first value is i."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.as_tensor(logits, dtype=torch.float32))
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.logits[x[:, 0].long()] * self.scale


def batches_of(labels, size=2):
    x = torch.arange(len(labels), dtype=torch.float32)[:, None]
    y = torch.as_tensor(labels)
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(y), size)]


def test_average_of_softmax_by_hand():
    a = FixedLogits([[2.0, 0.0], [0.0, 0.0]])
    b = FixedLogits([[0.0, 1.0], [1.0, 3.0]])
    x = torch.tensor([[0.0], [1.0]])
    expected = (torch.tensor([[2.0, 0.0], [0.0, 0.0]]).softmax(1) + torch.tensor([[0.0, 1.0], [1.0, 3.0]]).softmax(1)) / 2
    got = ensemble_probabilities([a, b], x, device="cpu")
    assert torch.allclose(got, expected)
    assert torch.allclose(got.sum(1), torch.ones(2))


def test_ensemble_beats_members_where_their_mistakes_differ():
    # Three images of class 0. Each member is confidently wrong on one image, mildly right on the others:
    # every member errs on 1 of 3, their average errs on none.
    right, wrong = [1.0, 0.0], [0.0, 5.0]
    members = [FixedLogits([wrong, right, right]), FixedLogits([right, wrong, right]), FixedLogits([right, right, wrong])]
    res = evaluate_ensemble(members, batches_of([0, 0, 0]), device="cpu")
    assert res["member_errors"] == [1 / 3, 1 / 3, 1 / 3]
    assert res["best_member_error"] == 1 / 3 and res["best_member"] == 0
    # Average of softmaxes: per image two members give p0 = 0.731, one gives p0 = 0.0067 -> mean 0.49 < 0.5: wrong!
    # (Softmax averaging is not majority voting.) With milder mistakes the average is right:
    assert res["error"] == 1.0
    milder = [0.0, 1.5]
    members = [FixedLogits([milder, right, right]), FixedLogits([right, milder, right]), FixedLogits([right, right, milder])]
    res = evaluate_ensemble(members, batches_of([0, 0, 0]), device="cpu")
    assert res["member_errors"] == [1 / 3] * 3 and res["error"] == 0.0 and res["n"] == 3


def test_one_member_ensemble_is_the_member():
    torch.manual_seed(0)
    model = cifar_resnet(8, width=4)
    x, y = torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,))
    res = evaluate_ensemble([model], [(x, y)], device="cpu")
    model.eval()
    with torch.no_grad():
        assert res["error"] == res["member_errors"][0] == int((model(x).argmax(1) != y).sum()) / 6


def test_training_mode_is_restored():
    a, b = cifar_resnet(8, width=4).train(), cifar_resnet(8, width=4).eval()
    ensemble_probabilities([a, b], torch.zeros(2, 3, 32, 32), device="cpu")
    assert a.training and not b.training


def test_different_class_counts_are_refused():
    members = [cifar_resnet(8, width=4), cifar_resnet(8, width=4, num_classes=100)]
    with pytest.raises(ValueError, match="member 0 gives 10, member 1 gives 100"):
        evaluate_ensemble(members, [(torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long))], device="cpu")
    with pytest.raises(ValueError, match="different numbers of classes"):
        ensemble_probabilities(members, torch.zeros(1, 3, 32, 32), device="cpu")


def test_bad_ensembles_are_refused():
    x = torch.zeros(1, 3, 32, 32)
    with pytest.raises(ValueError, match="at least 1 model"):
        ensemble_probabilities([], x, device="cpu")
    with pytest.raises(TypeError, match="a single model"):
        ensemble_probabilities(cifar_resnet(8, width=4), x, device="cpu")
    with pytest.raises(TypeError, match="member 1 is a str"):
        ensemble_probabilities([cifar_resnet(8, width=4), "net"], x, device="cpu")
    with pytest.raises(ValueError, match="labels run from 0 to 12"):
        evaluate_ensemble([cifar_resnet(8, width=4)], [(torch.zeros(2, 3, 32, 32), torch.tensor([0, 12]))], device="cpu")
    with pytest.raises(ValueError, match="no batches"):
        evaluate_ensemble([cifar_resnet(8, width=4)], [], device="cpu")


def test_cached_probabilities_give_the_same_ensemble():
    torch.manual_seed(1)
    models = [cifar_resnet(8, width=4) for _ in range(3)]
    x, y = torch.randn(10, 3, 32, 32), torch.randint(0, 10, (10,))
    batches = [(x[:6], y[:6]), (x[6:], y[6:])]
    direct = evaluate_ensemble(models, batches, device="cpu")
    outputs = [predict_probabilities(m, batches, device="cpu") for m in models]
    assert all(torch.equal(labels, y) for _, labels in outputs)
    cached = ensemble_errors([p for p, _ in outputs], y)
    assert cached == direct
    mean = ensemble_probabilities(models, x, device="cpu")
    assert torch.allclose(mean, torch.stack([p for p, _ in outputs]).mean(0), atol=1e-6)
    assert cached["error"] == int((mean.argmax(1) != y).sum()) / 10


def test_ensemble_errors_refuses_mismatches():
    p10, p7 = torch.full((4, 10), 0.1), torch.full((4, 7), 1 / 7)
    with pytest.raises(ValueError, match="member 0 gives 10, member 1 gives 7"):
        ensemble_errors([p10, p7], torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="different images"):
        ensemble_errors([p10, p10[:3]], torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="one label per image"):
        ensemble_errors([p10], torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 1 member"):
        ensemble_errors([], torch.zeros(4, dtype=torch.long))


def one_hot(classes, n=3):
    return torch.nn.functional.one_hot(torch.as_tensor(classes), n).float()


def test_mean_member_and_the_member_picked_on_validation_images():
    # 2 validation images, then 4 scored ones, all of class 0. Member 0 is right on both validation images but
    # on only 1 scored image; member 1 is wrong on one validation image and right on every scored one.
    labels = torch.zeros(6, dtype=torch.long)
    a = one_hot([0, 0, 1, 1, 1, 0])
    b = one_hot([0, 1, 0, 0, 0, 0])
    on_all = ensemble_errors([a, b], labels)
    assert on_all["mean_member_error"] == pytest.approx((3 / 6 + 1 / 6) / 2)
    res = ensemble_vs_members([a, b], labels, n_validation=2)
    assert res["n"] == 4 and res["member_errors"] == [3 / 4, 0.0]
    assert res["picked_member"] == 0 and res["picked_member_error"] == 3 / 4  # picked on validation: the worse one
    assert res["best_member"] == 1 and res["best_member_error"] == 0.0  # picked on the scored images: flattered
    assert res["mean_member_error"] == pytest.approx(3 / 8)


@pytest.mark.parametrize("n_validation", [0, 6, -1, 2.0, True, None])
def test_the_validation_split_must_leave_images_on_both_sides(n_validation):
    with pytest.raises(ValueError, match="n_validation must be an int from 1 to 5"):
        ensemble_vs_members([torch.full((6, 3), 1 / 3)], torch.zeros(6, dtype=torch.long), n_validation)
