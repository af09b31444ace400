"""The course's tooling, apart from the lecture's library: what runs, checks and publishes the notebooks.

- ``cli``: ``python -m lecture_utils ...``, the project's command line
- ``runner``, ``worker``, ``summary``: batch runs of the notebooks with papermill, and what each one measured
- ``cluster``: the batch runner and hyperparameter searches on Ray
- ``nbclean``: clean committed notebooks (no volatile metadata, no machine paths)

Data flows one way: this package imports the lecture's library (``lecture_utils.*``); the library never
imports this package and never looks for the repository checkout.
"""
