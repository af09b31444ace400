"""Running trials: a ``Job`` (what an engine gets), the check of an objective's value, and of the engine."""

import math
import threading
from dataclasses import dataclass, field

from lecture_utils.search.results import report_trial
from lecture_utils.search.space import suggest
from lecture_utils.search.stopping import Stop, TrialInterrupted
from lecture_utils.search.studies import ERROR_ATTR, INTERRUPTED_ATTR


def check_value(value):
    """An objective's return value as a finite float; TypeError/ValueError saying what it returned instead."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "item"):
        raise TypeError(f"objective returned {type(value).__name__} {value!r}: it must return a number")
    value = float(value.item() if hasattr(value, "item") else value)
    if not math.isfinite(value):
        raise ValueError(f"objective returned {value}")
    return value


@dataclass
class Job:
    """What an engine gets: the search's arguments, its opened ``study`` and how many trials to run.

    An engine runs ``n_to_run`` trials of the study and returns. In this process: ``job.run()``
    (Optuna's ``study.optimize``, its heartbeat thread included). Elsewhere, Optuna's ask-and-tell
    from this thread: ``trial, params = job.ask()``, send ``job.objective(params)`` off, and
    ``job.tell(trial, value)`` or ``job.tell(trial, error="why")``; meanwhile ``job.beat(running)``
    every ``HEARTBEAT_SECONDS``, and once ``job.stop.requested`` cancel what runs and
    ``job.tell(trial, interrupted=True)`` each of those trials before raising ``TrialInterrupted``.
    """

    objective: object
    space: dict
    strategy: str
    n_trials: int
    seed: int
    storage: object
    study: object
    n_to_run: int
    verbose: bool = False
    store: object = None  # the opened Optuna storage (None: in memory)
    stop: Stop = field(default_factory=Stop)

    def ask(self, trial=None):
        """Start a trial (or fill in ``trial``, one that Optuna started): ``(trial, params)``, with its first
        heartbeat written at once (Optuna's own thread writes a moment later: a trial killed before
        that would look alive for ever)."""
        trial = trial or self.study.ask()
        self.beat([trial])
        return trial, suggest(trial, self.space)

    def tell(self, trial, value=None, error=None, interrupted=False):
        """Finish a trial: its value, or why it failed (``error``), or cut off to be run again (``interrupted``)."""
        from optuna.trial import TrialState

        if not interrupted and error is None:
            try:
                value = check_value(value)
            except (TypeError, ValueError) as err:
                error = f"{type(err).__name__}: {err}"
        if interrupted:
            trial.set_user_attr(INTERRUPTED_ATTR, True)
        elif error is not None:
            trial.set_user_attr(ERROR_ATTR, error[:500])
        frozen = self.study.tell(trial, None if interrupted or error else value,
                                 state=TrialState.FAIL if interrupted or error else None)
        if self.verbose and not interrupted:
            report_trial(self.study, frozen)

    def beat(self, trials):
        """Write the heartbeat of running trials (with a storage that has heartbeats)."""
        interval = getattr(self.store, "get_heartbeat_interval", None)
        if interval is not None and interval():
            study_id = self.store.get_study_id_from_name(self.study.study_name)
            for t in trials:
                self.store.record_heartbeat(self.store.get_trial_id_from_study_id_trial_number(study_id, t.number))

    def run(self):
        """Run the trials here, one after another; a stop signal cuts the running one off at once."""

        def trial_of_optuna(trial):
            _, params = self.ask(trial)  # the first heartbeat now: Optuna's thread writes its own a moment later
            try:
                if self.stop.requested:  # a stop arrived between two trials: this one is cut off too
                    raise TrialInterrupted("stopped before it started")
                self.stop.in_objective = threading.current_thread() is threading.main_thread()
                try:
                    value = self.objective(dict(params))
                finally:
                    self.stop.in_objective = False
                value = check_value(value)
            except KeyboardInterrupt:
                trial.set_user_attr(INTERRUPTED_ATTR, True)
                raise
            except Exception as err:
                trial.set_user_attr(ERROR_ATTR, f"{type(err).__name__}: {err}"[:500])
                raise
            return value

        self.study.optimize(trial_of_optuna, n_trials=self.n_to_run, catch=(Exception,),
                            callbacks=[report_trial] if self.verbose else [], gc_after_trial=False)


def _check_engine(engine, options):
    """Before any work: the engine is None, "local" or a callable, and search got no engine options."""
    if options:
        raise TypeError(f"search() got engine options {', '.join(sorted(options))}: give them to the engine, e.g. "
                        "engine=RayEngine(address='auto') from lecture_utils.course.ray_search")
    if engine is None or engine == "local":
        return Job.run  # the trials one after another in this process
    if engine == "ray":
        raise ValueError("engine='ray' is not a name any more: pass engine=RayEngine(...) from "
                         "lecture_utils.course.ray_search (address=, resources_per_trial=, max_concurrent=)")
    if isinstance(engine, str) or not callable(engine):
        raise ValueError(f"unknown engine {engine!r}: use None (this process) or an engine object such as "
                         "RayEngine() from lecture_utils.course.ray_search")
    return engine
