"""The course's tooling, apart from the lecture's library: what runs, checks and publishes the notebooks.

- ``cli``: ``python -m lecture_utils {run, replicate, student, site, clean}``, the project's command line
- ``runner``, ``worker``, ``summary``, ``parameters``: batch runs of the notebooks with papermill (each in a
  worker process of its own), the ``-p`` overrides checked against a notebook's parameters cell, and a summary
  of what each run recorded and how long it took
- ``replicate``: a notebook run again on a disjoint set of seeds, its verdicts compared with the first run's
- ``cluster``, ``ray_search``: the batch runner on Ray (``run --ray``) and Ray as an engine for searches
  (``search(..., engine=RayEngine(...))``)
- ``nbclean``: committed notebooks without volatile metadata or machine paths
- ``student``: the student edition (solutions replaced by stubs), generated and checked
- ``site``: the Sphinx + myst-nb course site, built offline

Data flows one way: this package imports the lecture's library (``lecture_utils.*``); the library never
imports this package and never looks for the repository checkout.
"""
