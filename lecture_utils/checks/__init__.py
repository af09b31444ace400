"""Self-checks for the notebooks' exercises (in the style of CS231n's assignments and Neuromatch's tutorials).

Each ``check_<what>(student_answer, ...)`` computes its reference on its own (a formula, a package function,
torch's or SciPy's own implementation), prints one line starting with ``Correct:`` when the answer matches, and
otherwise raises ``ExerciseError`` (a ``ValueError``) saying what was expected, what came out, and a hint.
An answer left at ``None`` or ``...`` is an ``ExerciseError`` too. A stub's ``NotImplementedError`` is never
caught: in the student edition it stops the check cell, which is how CI knows every check tests something.

Answers are numbers, tensors, or the functions and classes the exercise asks for (the check calls them).
Import them from here (``from lecture_utils.checks import check_warp``); each module serves one notebook:

- ``_core``: ``ExerciseError``, ``rel_error`` and the shared helpers (answer validation, the ``Correct:`` line,
  ``torch.random.fork_rng`` so that a check leaves the global random state alone)
- ``invariance`` (01): ``check_local_contrast_normalization``, ``check_receptive_field``, ``check_rotated_accuracy``
- ``elastic`` (02): ``check_displacement_field``, ``check_interior_rms``, ``check_warp``
- ``alexnet`` (03): ``check_output_size``, ``check_layer_parameters``, ``check_layer_macs``,
  ``check_biggest_saving``
- ``inception`` (04): ``check_branch_macs``, ``check_inception_budget``, ``check_head_parameters``
- ``resnets`` (05): ``check_basic_block``, ``check_resnet20_parameters``, ``check_ensemble``
- ``optimization`` (06 and 06b): ``check_momentum_step``, ``check_halving_rule``, ``check_kaiming_std``;
  ``check_weight_sharing``, ``check_random_search_trials``, ``check_expected_improvement``
- ``debugging`` (07, 07b): ``check_gradient_check``, ``check_smoothness``, ``check_dead_fraction``;
  ``check_chance_loss``, ``check_silu_backward``, ``check_contrastive_loss``
"""

from ._core import ExerciseError, rel_error
from .alexnet import check_biggest_saving, check_layer_macs, check_layer_parameters, check_output_size
from .debugging import (_dead_layer, check_chance_loss, check_contrastive_loss, check_dead_fraction,
                        check_gradient_check, check_silu_backward, check_smoothness)
from .elastic import check_displacement_field, check_interior_rms, check_warp
from .inception import SIZES_3A, check_branch_macs, check_head_parameters, check_inception_budget
from .invariance import LENET_LAYERS, check_local_contrast_normalization, check_receptive_field, check_rotated_accuracy
from .optimization import (check_expected_improvement, check_halving_rule, check_kaiming_std, check_momentum_step,
                           check_random_search_trials, check_weight_sharing)
from .resnets import _member_logits, check_basic_block, check_ensemble, check_resnet20_parameters

# LENET_LAYERS and SIZES_3A (default arguments) stay importable from here, as before the split; so do the
# test data _dead_layer and _member_logits, which tests/test_checks.py reuses as checks._dead_layer, ...
__all__ = [
    "ExerciseError", "rel_error",
    "check_local_contrast_normalization", "check_receptive_field", "check_rotated_accuracy",
    "check_displacement_field", "check_interior_rms", "check_warp",
    "check_output_size", "check_layer_parameters", "check_layer_macs", "check_biggest_saving",
    "check_branch_macs", "check_inception_budget", "check_head_parameters",
    "check_basic_block", "check_resnet20_parameters", "check_ensemble",
    "check_halving_rule", "check_kaiming_std", "check_momentum_step",
    "check_weight_sharing", "check_random_search_trials", "check_expected_improvement",
    "check_gradient_check", "check_smoothness", "check_dead_fraction",
    "check_chance_loss", "check_silu_backward", "check_contrastive_loss",
]
