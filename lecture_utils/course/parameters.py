"""A notebook's parameters cell, read without running it, and the check of ``-p NAME VALUE`` against it.

The cell tagged ``parameters`` is parsed with ``ast``; nothing in it runs:

- a top-level ``NAME = value`` or ``NAME: type = value`` (one name on the left) is a parameter; imports and other
  statements are skipped, and a later assignment of a name wins, as when the cell runs;
- ``SIZES = {"NAME": {"smoke": ..., "default": ..., "full": ...}, ...}`` must be a dict literal: its entries are
  the notebook's sizes, checked by ``profiles.size_rule`` (the rules ``settings`` applies in the notebook);
- any other value that is a Python literal is the parameter's default (``SEED = 0``); one that is not
  (``PROFILE = os.environ.get(...)``) is kept as its source text;
- the comment at the end of an entry's or an assignment's line is what it means (``--list-parameters``).

``-p EPOCHS 3`` for a SIZES entry becomes papermill's parameter ``SIZES`` (the whole table, EPOCHS set to 3 at
every profile); ``-p SEED 3`` becomes ``SEED = 3``. Values are checked here, before any kernel starts.
"""

import ast
import difflib
import io
import math
import tokenize
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from lecture_utils.profiles import ENV_VAR, PROFILES, check_size, check_value, parameter_rule, size_rule, Rule

SIZES_NAME = "SIZES"
TYPE_RULES = {int: Rule("int"), float: Rule("number"), str: Rule("str"), bool: Rule("bool")}  # names without a rule


@dataclass
class Parameter:
    """One assignment of the parameters cell: its default (a literal, or the source text), type and meaning."""

    name: str
    default: object
    literal: bool  # False: ``default`` is the source text of an expression (``os.environ.get(...)``)
    annotation: str = ""  # "int" of ``SEED: int = 0``
    help: str = ""


@dataclass
class NotebookParameters:
    """What a notebook's parameters cell declares: its SIZES table and its other parameters, in order."""

    path: Path
    sizes: dict = field(default_factory=dict)  # NAME -> {profile: value}
    size_help: dict = field(default_factory=dict)  # NAME -> meaning
    plain: dict = field(default_factory=dict)  # NAME -> Parameter (PROFILE included)
    datasets: tuple = ()  # the settings(..., datasets=(...)) of the notebook's code, () if it names none

    @property
    def names(self):
        """What ``-p`` may set: the sizes and the plain parameters, not PROFILE or SIZES."""
        return [*self.sizes, *(n for n in self.plain if n not in ("PROFILE", SIZES_NAME))]

    def default(self, name, profile=None):
        """The value ``name`` has when nothing is injected: a size at ``profile``, a plain literal, else None."""
        if name in self.sizes:
            return self.sizes[name][profile or "default"]
        p = self.plain.get(name)
        return p.default if p is not None and p.literal else None


def read_notebook(path):
    """The notebook at ``path`` as nbformat reads it; a file that is not a notebook is a one-line ValueError."""
    import nbformat

    try:
        with warnings.catch_warnings():  # cells without ids (older nbformat) are fine here
            warnings.simplefilter("ignore")
            return nbformat.read(str(path), as_version=4)
    except Exception as err:  # nbformat raises several kinds for a broken file
        raise ValueError(f"{path} is not a readable notebook: {type(err).__name__}: {err}") from None


def _comments(source):
    """``{line number: comment text}`` of a cell's source (the text after ``#``, stripped)."""
    found = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                found[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, SyntaxError):
        pass
    return found


def _datasets(nb):
    """The literal ``datasets=(...)`` of a ``settings(...)`` call in the notebook's code cells, () if none."""
    for cell in nb.cells:
        if cell.cell_type != "code" or "datasets" not in cell.source:
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # IPython magics: not ours to read
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "settings":
                for kw in node.keywords:
                    if kw.arg == "datasets":
                        try:
                            return tuple(ast.literal_eval(kw.value))
                        except (ValueError, TypeError, SyntaxError):
                            return ()
    return ()


def notebook_parameters(path):
    """The ``NotebookParameters`` of the notebook at ``path`` (empty when it has no parameters cell).

    A file that is not a notebook, a cell that is not Python, or a SIZES that
    is not a literal table of the three profiles is a one-line ValueError.
    """
    nb = read_notebook(path)
    found = NotebookParameters(Path(path), datasets=_datasets(nb))
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        return found
    source = cells[0].source
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ValueError(f"the parameters cell of {path} is not valid Python: {err.msg} (line {err.lineno})") from None
    comments = _comments(source)
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else \
            node.target if isinstance(node, ast.AnnAssign) and node.value is not None else None
        if not isinstance(target, ast.Name):
            continue
        name, value = target.id, node.value
        if name == SIZES_NAME:
            found.sizes, found.size_help = _sizes(path, value, comments)
            continue
        try:
            default, literal = ast.literal_eval(value), True
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            default, literal = ast.get_source_segment(source, value), False
        annotation = ast.unparse(node.annotation) if isinstance(node, ast.AnnAssign) else ""
        found.plain.pop(name, None)  # a later assignment wins, and takes its place in the order
        found.plain[name] = Parameter(name, default, literal, annotation, comments.get(node.end_lineno, ""))
    return found


def _sizes(path, node, comments):
    """The SIZES table and each entry's meaning, from the dict literal ``node``; checked as ``settings`` does."""
    if not isinstance(node, ast.Dict):
        raise ValueError(f"SIZES in the parameters cell of {path} must be a dict literal "
                         '{"NAME": {"smoke": ..., "default": ..., "full": ...}, ...}')
    table, meanings = {}, {}
    for key, value in zip(node.keys, node.values):
        try:
            name, entry = ast.literal_eval(key), ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError):
            raise ValueError(f"SIZES in the parameters cell of {path}: every key and value must be a literal "
                             f"(line {value.lineno})") from None
        try:
            size_rule(name, entry)
            for profile in PROFILES:
                check_size(name, entry[profile], entry, f"{entry[profile]!r} at profile {profile}")
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        table[name] = entry
        meanings[name] = comments.get(value.end_lineno, comments.get(key.lineno, ""))
    return table, meanings


# ---------------------------------------------------------------- -p NAME VALUE


def nearest(name, candidates):
    """The candidate ``name`` was probably meant as: the same name in other case, else the closest (or None)."""
    same = [c for c in candidates if c.lower() == name.lower()]
    close = same or difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


def _interpret(value, reference):
    """A ``-p`` value as the notebook takes it: command-line text becomes a Python literal when it parses, unless
    the parameter is a string (``reference`` is its default). Returns ``(value, how the message shows it)``."""
    if not isinstance(value, str):
        return value, repr(value)
    if isinstance(reference, str):
        return value, repr(value)
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        parsed = value
        if _is_number(reference):
            try:
                parsed = float(value)  # "nan", "inf": read as floats, then refused as not finite
            except ValueError:
                pass
    shown = value if isinstance(parsed, float) and not math.isfinite(parsed) else repr(parsed)
    return parsed, shown


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_value_for(nb, name, value, profile=None):
    """``value`` for parameter ``name`` of notebook ``nb`` (``NotebookParameters``), checked; or a ValueError.

    A size: the entry's type and rule. A plain parameter: its rule by name (``SEED``, ``LR``, ``DATASET``
    with the notebook's ``datasets``, ...), else the type of its literal default (an int may stand for a float).
    """
    if name in nb.sizes:
        entry = nb.sizes[name]
        value, shown = _interpret(value, entry[profile or "default"])
        return check_size(name, value, entry, shown)
    default = nb.default(name)
    value, shown = _interpret(value, default)
    rule = parameter_rule(name, nb.datasets)
    if rule is None and default is not None:
        rule = TYPE_RULES.get(type(default))
    return value if rule is None else check_value(name, value, rule, shown)


def papermill_parameters(nb, given, profile):
    """What papermill injects for notebook ``nb``: PROFILE, the SIZES table with every ``-p`` size set at every
    profile, and each ``-p`` plain parameter. ``given``: the checked ``{NAME: value}`` this notebook has."""
    injected = {"PROFILE": profile}
    sizes = {n: v for n, v in given.items() if n in nb.sizes}
    if sizes:
        injected[SIZES_NAME] = {n: ({p: sizes[n] for p in PROFILES} if n in sizes else dict(entry))
                                for n, entry in nb.sizes.items()}
    injected.update({n: v for n, v in given.items() if n not in nb.sizes})
    return injected


def check_overrides(notebooks, parameters, profile):
    """``{notebook: papermill's parameters}`` for ``-p`` ``parameters`` (``{NAME: value}``), all checked first.

    ``notebooks``: ``{path: NotebookParameters}``. A name no notebook has is a
    ValueError suggesting the nearest; PROFILE is ``--profile``; each bad value
    is a line of the ValueError (prefixed by the notebooks it is bad for, when not all of them).
    """
    for name in parameters:
        if name.upper() in ("PROFILE", ENV_VAR):
            raise ValueError(f"set the profile with --profile ({', '.join(PROFILES)}) or ${ENV_VAR}, not -p {name}")
        if name == SIZES_NAME:
            raise ValueError("set one size with -p NAME VALUE (such as -p EPOCHS 3), not -p SIZES")
    everything = set().union(*(set(nb.names) for nb in notebooks.values()))
    unknown = sorted(set(parameters) - everything)
    if unknown:
        hints = [f"{u} (did you mean {nearest(u, everything)}?)" if nearest(u, everything) else u for u in unknown]
        raise ValueError(f"unknown parameter {', '.join(hints)}: the notebooks' parameters are "
                         f"{', '.join(sorted(everything)) or 'none'}")
    problems, given = {}, {path: {} for path in notebooks}
    for name, value in parameters.items():  # in the order given, each for every notebook that has it
        for path, nb in notebooks.items():
            if name not in nb.names:
                continue
            try:
                given[path][name] = check_value_for(nb, name, value, profile)
            except ValueError as err:
                problems.setdefault((name, str(err)), []).append(Path(path).stem)
    if problems:
        lines = []
        for (name, message), stems in problems.items():
            having = [Path(p).stem for p, nb in notebooks.items() if name in nb.names]
            lines.append(message if stems == having else f"{', '.join(stems)}: {message}")
        raise ValueError("\n".join(lines))
    return {path: papermill_parameters(nb, given[path], profile) for path, nb in notebooks.items()}


def requested_dataset(path, injected):
    """The data set a run asks for: ``DATASET`` as injected, else the parameters cell's default ("" if none)."""
    if "DATASET" in injected:
        return str(injected["DATASET"])
    try:
        value = notebook_parameters(path).default("DATASET")
    except ValueError:
        return ""
    return value if isinstance(value, str) else ""


def describe(nb):
    """The lines of ``--list-parameters`` for one notebook."""
    lines = [f"  PROFILE: set with --profile ({', '.join(PROFILES)})"] if "PROFILE" in nb.plain else []
    if nb.sizes:
        lines.append(f"  sizes ({' / '.join(PROFILES)}; -p NAME VALUE sets one at every profile):")
        width = max(map(len, nb.sizes))
        for name, entry in nb.sizes.items():
            kind = "float" if any(isinstance(v, float) for v in entry.values()) else type(entry["default"]).__name__
            values = " / ".join(f"{entry[p]:_}" if _is_number(entry[p]) else repr(entry[p]) for p in PROFILES)
            meaning = f"  # {nb.size_help[name]}" if nb.size_help.get(name) else ""
            lines.append(f"    -p {name:<{width}} ({kind}) = {values}{meaning}")
    for p in nb.plain.values():
        if p.name in ("PROFILE", SIZES_NAME):
            continue
        kind = p.annotation or (type(p.default).__name__ if p.literal and p.default is not None else "")
        meaning = f"  # {p.help}" if p.help else ""
        default = repr(p.default) if p.literal else p.default
        lines.append(f"  -p {p.name}{f' ({kind})' if kind else ''} = {default}{meaning}")
    return lines or ["  no parameters cell"]
