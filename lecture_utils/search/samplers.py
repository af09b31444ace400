"""The sampler of each strategy: Optuna's GridSampler, or a RandomSampler / GPSampler made anew for each trial.

A random or Bayesian trial's sampler is seeded from (seed, the trial's place among the study's
new trials), so an interrupted and resumed search draws exactly what the uninterrupted one would.
"""

from lecture_utils.search.space import grid_shape, grid_values

STRATEGIES = ("grid", "random", "bayes")


def _is_rerun(trial):
    """Whether a trial is the copy of a cut-off one (queued by Optuna's RetryHeartbeatStaleTrialCallback)."""
    import optuna

    return optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trial) is not None


def trial_seed(seed, study, trial):
    """The seed of ``trial``'s sampler: from (seed, its place among the study's new trials, reruns left out)."""
    import numpy as np

    reruns_before = sum(1 for t in study.get_trials(deepcopy=False) if t.number < trial.number and _is_rerun(t))
    return int(np.random.SeedSequence([seed, trial.number - reruns_before]).generate_state(1)[0])


def make_sampler(strategy, space, n_trials, seed):
    """The Optuna sampler of ``strategy`` (and, for grid search, the grid's shape)."""
    import optuna

    class SeededPerTrial(optuna.samplers.BaseSampler):
        """A fresh sampler for each trial, ``make(trial_seed(...))``: what a trial draws depends on the seed,
        its place and the finished trials, never on how often the search was stopped and resumed."""

        def __init__(self, make):
            self.make, self.samplers = make, {}  # trial number -> its sampler, while it runs

        def of(self, study, trial):
            if trial.number not in self.samplers:
                self.samplers[trial.number] = self.make(trial_seed(seed, study, trial))
            return self.samplers[trial.number]

        def before_trial(self, study, trial):
            self.of(study, trial).before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):
            return self.of(study, trial).infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self.of(study, trial).sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self.of(study, trial).sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study, trial, state, values):
            self.of(study, trial).after_trial(study, trial, state, values)
            del self.samplers[trial.number]

    def gp(trial_seed):  # Matern-5/2 GP, log expected improvement, after a few random trials
        return optuna.samplers.GPSampler(seed=trial_seed, n_startup_trials=min(10, max(2, n_trials // 3)),
                                         independent_sampler=optuna.samplers.RandomSampler(seed=trial_seed))

    class Grid(optuna.samplers.GridSampler):
        """Optuna's GridSampler without its ``study.stop()`` at the grid's end (which only ``study.optimize``
        may call): a search asks for the grid's points and no more."""

        def after_trial(self, study, trial, state, values):
            pass

    if strategy == "grid":
        shape = grid_shape(space, n_trials)
        grid = {name: grid_values(space[name], shape[name]) for name in space}
        return Grid(grid, seed=seed), {n: len(v) for n, v in grid.items()}
    if strategy == "random":
        return SeededPerTrial(lambda s: optuna.samplers.RandomSampler(seed=s)), None
    return SeededPerTrial(gp), None

