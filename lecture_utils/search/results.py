"""What a search returns: ``SearchResult`` (with its ``TrialResult``s), built from a study by ``collect``."""

import math
from dataclasses import dataclass, field

from lecture_utils.search.studies import ERROR_ATTR, INTERRUPTED_ATTR, _retried_numbers


@dataclass
class TrialResult:
    """One finished trial: its number in the study, parameters, value (None if failed), state and error."""

    number: int
    params: dict
    value: float | None
    state: str  # "complete" or "failed"
    error: str | None = None
    seconds: float | None = None


@dataclass
class SearchResult:
    """What a search found: ``best_value``, ``best_params`` and every finished ``trials`` in order."""

    strategy: str
    best_value: float | None
    best_params: dict | None
    trials: list
    study_name: str
    grid_shape: dict | None = None  # grid search: the number of values of each dimension
    retried: list = field(default_factory=list)  # numbers of trials run again after they were cut off
    study: object = field(default=None, repr=False)  # the optuna.Study, for anything else

    @property
    def failed(self):
        """The trials that failed (their ``error`` says why)."""
        return [t for t in self.trials if t.state == "failed"]

    @property
    def values(self):
        """Each finished trial's value, in order (NaN for a failed trial)."""
        return [math.nan if t.value is None else t.value for t in self.trials]

    def best_so_far(self):
        """The best value after each trial, in order (NaN until a trial has completed)."""
        best, out = math.inf, []
        for t in self.trials:
            if t.value is not None:
                best = min(best, t.value)
            out.append(best if math.isfinite(best) else math.nan)
        return out

    def table(self):
        """A plain-text table: one row per trial."""
        names = list(self.trials[0].params) if self.trials else []
        lines = ["  ".join([f"{'trial':>5}", *(f"{n:>12}" for n in names), f"{'value':>12}", "state"])]
        for t in self.trials:
            cells = [f"{t.number:>5}", *(f"{_fmt(t.params.get(n)):>12}" for n in names),
                     f"{_fmt(t.value):>12}", t.state + (f" ({t.error})" if t.error else "")]
            lines.append("  ".join(cells))
        return "\n".join(lines)

    def __str__(self):
        failed = f", {len(self.failed)} failed" if self.failed else ""
        rerun = f", {len(self.retried)} rerun after being cut off" if self.retried else ""
        best = "no trial completed" if self.best_params is None else \
            f"best {_fmt(self.best_value)} at {_params_text(self.best_params)}"
        return f"{self.strategy} search, {len(self.trials)} trials{failed}{rerun}: {best}"


def _fmt(v):
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _params_text(params):
    return "{" + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()) + "}"


def collect(study, strategy, shape=None):
    """The ``SearchResult`` of a study: finished trials in order, a retried trial's cut-off attempt left out."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = _retried_numbers(trials)
    out = []
    for t in trials:
        if t.number in retried or not t.state.is_finished():
            continue
        complete = t.state == TrialState.COMPLETE
        error = None if complete else t.user_attrs.get(ERROR_ATTR) or (
            "interrupted: a resume runs it again" if t.user_attrs.get(INTERRUPTED_ATTR)
            else "its process stopped while it ran")
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        out.append(TrialResult(t.number, dict(t.params), t.value if complete else None,
                               "complete" if complete else "failed", error, seconds))
    done = [t for t in out if t.state == "complete"]
    best = min(done, key=lambda t: t.value) if done else None
    return SearchResult(strategy, best.value if best else None, best.params if best else None, out,
                        study.study_name, shape, sorted(retried), study)

def report_trial(study, trial):
    """One line for a finished trial (an Optuna callback)."""
    what = _fmt(trial.value) if trial.value is not None else f"failed: {trial.user_attrs.get(ERROR_ATTR)}"
    print(f"trial {trial.number}: {_params_text(trial.params)} -> {what}", flush=True)
