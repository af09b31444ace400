"""When is Ray worth it on one machine? Start-up cost of a local instance, and overhead per trial.

Prints two tables:
1. a local Ray instance (``lecture_utils.course.cluster.ray_session``): seconds to import Ray, to start it,
   to run the first tasks, to shut it down, and the resident memory of its processes;
2. a random search of ``--trials`` trials of an objective that sleeps ``--work`` seconds (0: a no-op),
   in process (``engine=None``) and as Ray tasks on a running local instance
   (``engine=RayEngine(max_concurrent=--concurrent)``, which joins the instance already started):
   wall seconds, and seconds per trial beyond the objective's own work.

    python3 bench/bench_ray.py                       # about a minute on 2 cores
    python3 bench/bench_ray.py --trials 40 --work 0 0.5 2
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import cpu_name  # noqa: E402


def ray_memory_mb():
    """Resident memory of this machine's Ray processes (raylet, GCS, workers, ...), in MB."""
    import psutil

    total = 0
    for p in psutil.process_iter(["pid", "cmdline", "memory_info"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.info["pid"] != os.getpid() and ("ray::" in cmd or "/ray/" in cmd or "raylet" in cmd
                                             or "gcs_server" in cmd):
            total += p.info["memory_info"].rss if p.info["memory_info"] else 0
    return total / 2**20


def startup(num_cpus):
    t0 = time.perf_counter()
    import ray  # noqa: F401  (timed: importing Ray is part of its cost)

    from lecture_utils.course.cluster import ray_session

    t1 = time.perf_counter()
    with ray_session(None, num_cpus=num_cpus) as session:
        t2 = time.perf_counter()
        noop = session.remote(num_cpus=1)(lambda: None)
        session.get([noop.remote() for _ in range(num_cpus)])
        t3 = time.perf_counter()
        memory = ray_memory_mb()
        t4 = time.perf_counter()
    t5 = time.perf_counter()
    return {"import ray": t1 - t0, "start the instance": t2 - t1, "first tasks": t3 - t2,
            "shut down": t5 - t4, "memory (MB)": memory}


def objective_factory(work):
    def objective(params):
        if work:
            time.sleep(work)
        return (params["x"] - 0.3) ** 2

    return objective


def searches(trials, works, concurrent, num_cpus):
    """Wall seconds of the same random search in process and as Ray tasks (instance already running)."""
    from lecture_utils.course.cluster import ray_session
    from lecture_utils.course.ray_search import RayEngine
    from lecture_utils.search import search

    space = {"x": ("linear", 0.0, 1.0)}
    rows = []
    with ray_session(None, num_cpus=num_cpus):  # a RayEngine with address=None uses this open session
        for work in works:
            for engine in (None, RayEngine(address=None, max_concurrent=concurrent)):
                t = time.perf_counter()
                result = search(objective_factory(work), space, strategy="random", n_trials=trials, seed=0,
                                engine=engine)
                wall = time.perf_counter() - t
                if len(result.trials) != trials or result.failed:
                    raise RuntimeError(f"{engine or 'in process'}: {result}")
                lanes = 1 if engine is None else concurrent
                per_trial = (wall - trials * work / lanes) / trials
                name = "in process" if engine is None else f"Ray tasks, {concurrent} at once"
                rows.append((work, name, wall, per_trial))
    return rows


def main():
    from importlib.metadata import version

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--work", type=float, nargs="+", default=[0.0, 1.0],
                        help="seconds each trial sleeps (0: a no-op objective)")
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=os.cpu_count())
    args = parser.parse_args()
    print(f"{cpu_name()}, {os.cpu_count()} cores, Ray {version('ray')}, load {os.getloadavg()[0]:.2f}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(f"| local Ray instance, num_cpus={args.cpus} | |\n|---|--:|")
    for name, value in startup(args.cpus).items():
        print(f"| {name} | {value:,.0f} |" if "MB" in name else f"| {name} (s) | {value:,.2f} |")
    print(f"\n| {args.trials} trials of a random search | objective (s) | wall (s) | s per trial beyond the "
          "objective |\n|---|--:|--:|--:|")
    for work, name, wall, per in searches(args.trials, args.work, args.concurrent, args.cpus):
        print(f"| {name} | {work:g} | {wall:.2f} | {per:.3f} |")


if __name__ == "__main__":
    main()
