"""Where the data sets live, and how their paths are printed.

The data root is, in order:

1. ``root=`` when a function is given one;
2. ``$LECTURE_DATA_DIR``;
3. the ``data/`` folder of the course's folder, found by walking up from the
   working directory (``project_folder``): notebooks run in ``notebooks/``,
   the batch runner and the tests in the repository itself, and both find it;
4. ``~/.cache/lecture_utils`` (a notebook run anywhere else, as on Colab).

Nothing here depends on where the package is installed. Paths are printed
relative to the course's folder, or as ``$LECTURE_DATA_DIR/...`` or ``~/...``,
so outputs committed with the notebooks carry no machine's paths.
"""

import os
import re
from pathlib import Path

ROOT_ENV = "LECTURE_DATA_DIR"
_NAMED_HERE = re.compile(r"""^name\s*=\s*["']lecture[-_.]utils["']""", re.MULTILINE | re.IGNORECASE)


def project_folder(start=None):
    """The course's folder: the first folder at or above ``start`` (default: the working directory)
    that has a ``data/`` folder and either a ``pyproject.toml`` naming lecture-utils or a ``notebooks/``
    folder; ``None`` if there is none."""
    try:
        folder = Path(start if start is not None else os.getcwd()).absolute()
    except OSError:  # the working directory was deleted
        return None
    for candidate in (folder, *folder.parents):
        if (candidate / "data").is_dir() and ((candidate / "notebooks").is_dir()
                                              or _names_this_project(candidate / "pyproject.toml")):
            return candidate
    return None


def _names_this_project(pyproject):
    try:
        return _NAMED_HERE.search(pyproject.read_text(errors="replace")) is not None
    except OSError:  # missing or unreadable
        return False


def data_root(root=None):
    """Where data sets live: ``root``, else ``$LECTURE_DATA_DIR``, else the course folder's ``data/``,
    else ``~/.cache/lecture_utils`` (see the module's docstring)."""
    if root is None:
        root = os.environ.get(ROOT_ENV) or None
    if root is not None:
        return Path(root).expanduser()
    project = project_folder()
    return project / "data" if project is not None else Path.home() / ".cache" / "lecture_utils"


def shown(path):
    """``path`` as printed: relative to the course's folder, else ``$LECTURE_DATA_DIR/...``, else ``~/...``.

    A folder outside all three (one passed as ``root=``) is shown as it is.
    """
    path = Path(path).absolute()
    bases = [(project_folder(), "")]
    if os.environ.get(ROOT_ENV):
        bases.append((Path(os.environ[ROOT_ENV]).expanduser().absolute(), "$" + ROOT_ENV))
    bases.append((Path.home(), "~"))
    for base, prefix in bases:
        if base is None:
            continue
        for candidate, b in ((path, base), (path.resolve(), base.resolve())):
            if candidate == b or b in candidate.parents:
                rel = candidate.relative_to(b).as_posix()
                if not prefix:
                    return rel
                return prefix if rel == "." else f"{prefix}/{rel}"
    return str(path)


def writable_ancestor(folder):
    """``(ancestor, writable)``: the nearest existing folder at or above ``folder``, and whether we may write there."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder, os.access(folder, os.W_OK)
