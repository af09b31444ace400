"""Honest comparisons of conditions run over several seeds: paired differences, intervals, verdicts.

Two conditions (say affine and elastic expansion) run with the same seeds give
one result per seed each, ``a[i]`` and ``b[i]``. Seed ``i`` fixes what both
runs share (initialization, data order), so the per-seed differences
``d[i] = a[i] - b[i]`` cancel most of the seed-to-seed noise. The interval of
the mean difference is Student's t on those differences::

    d    = a - b
    mean = d.mean()
    se   = d.std(ddof=1) / sqrt(n)                     # standard error of the mean difference
    t    = scipy.stats.t.ppf((1 + confidence) / 2, n - 1)
    interval = (mean - t * se, mean + t * se)

A difference is *established* only when that interval excludes 0; then the
verdict names the better condition and by how much, else it says "not
established". With few seeds the t interval is the right small-sample tool (a
bootstrap needs more pairs than a notebook can afford to be any better).
One seed per condition gives the values without an interval ("1 seed: no
interval"), never a verdict. When every pair differs by the same amount (to
within rounding: a spread of the differences below 1e-12 of the values' own
size, so seconds and nanoseconds get the same answer) the noise cannot be
estimated and nothing is established either.

A verdict can be kept as data (``Comparison.record(name)``, see
``lecture_utils.record``), and ``Comparison.conclusion(...)`` picks the
sentence a notebook prints, so the prose follows the numbers of the run::

    c = paired_comparison(affine, elastic, names=("affine", "elastic"), lower_is_better=True, unit="%")
    c.record("affine vs elastic")
    print(c.conclusion(if_a_better="Affine beats elastic here, by {by} ({ci}).",
                       if_b_better="Elastic distortions help: {by} fewer errors ({ci}).",
                       otherwise="No difference between {a} and {b} is established at this budget ({verdict})."))

``compare`` runs several such comparisons (each is at the stated confidence
on its own: with many pairs, expect about 1 in 20 to be called at 95% by
chance), ``summarize`` gives each condition's n, mean, std, min and max.
``seeds_needed(sd, gap)`` is the power calculation: how many paired seeds a
gap needs, given the spread of the per-seed differences.
"""

import html
import math

import numpy as np
from scipy import stats as _scipy_stats


def t_interval(differences, confidence=0.95):
    """Mean and Student-t interval of paired differences along the last axis: ``(mean, low, high)``.

    Works on a 1-D array (one comparison) or on an (..., n) array of many at
    once (the tests simulate thousands of comparisons in one call).
    """
    d = np.asarray(differences, dtype=float)
    n = d.shape[-1]
    mean = d.mean(axis=-1)
    se = d.std(axis=-1, ddof=1) / math.sqrt(n)
    t = _scipy_stats.t.ppf(0.5 + confidence / 2, df=n - 1)
    return mean, mean - t * se, mean + t * se


def _values(x, what):
    """``x`` as a 1-D float array of finite numbers, or a ValueError saying what is wrong."""
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    try:
        v = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: must be a sequence of numbers (one per seed), got {x!r}") from None
    if v.ndim != 1:
        raise ValueError(f"{what}: must be a flat sequence of numbers (one per seed), got shape {v.shape}")
    if not np.isfinite(v).all():
        bad = [i for i, ok in enumerate(np.isfinite(v)) if not ok]
        raise ValueError(f"{what}: NaN or infinite at positions {bad}; every seed needs a finite "
                         "result (a diverged run must be rerun or reported, not averaged)")
    return v


def _check_confidence(confidence):
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number between 0 and 1 (e.g. 0.95), got {confidence!r}")
    return float(confidence)


MAX_DIGITS = 15  # float64 holds about 15-16 significant digits


def _check_digits(digits):
    if digits is not None and (isinstance(digits, bool) or not isinstance(digits, int)
                               or not 0 <= digits <= MAX_DIGITS):
        raise ValueError(f"digits must be None (automatic) or an int from 0 to {MAX_DIGITS} (digits after the "
                         f"point), got {digits!r}")
    return digits


def _decimals(scale, digits):
    """Digits after the point: ``digits`` if given, else enough to show ``scale`` with 2 significant figures (>= 1)."""
    if digits is not None:
        return digits
    if not math.isfinite(scale) or scale <= 0:
        return 2
    return int(min(MAX_DIGITS, max(1, 1 - math.floor(math.log10(scale)))))


RELATIVE_ROUNDING = 1e-12  # spreads below this fraction of the values' size are float rounding, not seed noise


def _unit_words(unit):
    """How a difference is spelled: values in % differ by percentage points."""
    return " points" if unit == "%" else (f" {unit}" if unit else "")


class Comparison:
    """The paired comparison of two conditions; see ``paired_comparison``."""

    def __init__(self, a, b, confidence, names, lower_is_better, unit, digits, margin=None):
        self.a, self.b = a, b
        self.margin = margin
        self.negligible = False
        self.names = names
        self.n = len(a)
        self.confidence = confidence
        self.lower_is_better = lower_is_better
        self.unit = unit
        self.mean_a, self.mean_b = float(a.mean()), float(b.mean())
        d = a - b
        self.difference = float(d.mean())
        self.degenerate = False
        if self.n == 1:  # one seed: the values, no interval and no verdict
            self.low = self.high = None
            self.established, self.better = False, None
            self.decimals = _decimals(abs(self.difference) or max(abs(self.mean_a), abs(self.mean_b)), digits)
            return
        _, low, high = t_interval(d, confidence)
        self.low, self.high = float(low), float(high)
        # Every pair differing by the same amount (rounded accuracies on a small test set do that) leaves the
        # noise unestimated: the interval has zero width and proves nothing, so nothing is called established.
        # "The same" is judged against the size of the values (float rounding of a - b is about 1e-16 of it),
        # so the verdict does not depend on the unit (seconds or nanoseconds).
        size = max(float(np.abs(a).max()), float(np.abs(b).max()))
        self.degenerate = bool(np.ptp(d) <= RELATIVE_ROUNDING * size)
        if self.degenerate:
            self.low = self.high = self.difference
        # A margin is the smallest difference that matters: an interval inside (-margin, margin) shows that the
        # difference, whatever its sign, is too small to matter (an equivalence verdict), even where it excludes 0.
        self.negligible = bool(margin is not None and not self.degenerate and -margin < self.low
                               and self.high < margin)
        self.established = bool(not self.degenerate and not self.negligible and (self.low > 0 or self.high < 0))
        self.better = self._better() if self.established else None
        self.decimals = _decimals((self.high - self.low) / 2 or abs(self.difference), digits)

    def _better(self):
        if self.lower_is_better is None:
            return None
        a_higher = self.difference > 0
        return self.names[1] if a_higher == self.lower_is_better else self.names[0]

    def _f(self, x, sign=False):
        return f"{x:+.{self.decimals}f}" if sign else f"{x:.{self.decimals}f}"

    @property
    def title(self):
        return f"{self.names[0]} vs {self.names[1]}"

    @property
    def interval_text(self):
        """The interval of ``a - b``, e.g. ``95% CI +0.05 to +0.27`` (``no interval (1 seed)`` with one seed)."""
        if self.n == 1:
            return "no interval (1 seed)"
        return f"{100 * self.confidence:g}% CI {self._f(self.low, True)} to {self._f(self.high, True)}"

    @property
    def outcome(self):
        """The verdict in a word, as recorded: ``"<name> better"``, ``"<name> higher"``, ``"negligible"`` (the
        interval lies within the margin), ``"not established"`` or ``"1 seed"``. Two runs agree on a comparison when
        their outcomes are equal."""
        if self.n == 1:
            return "1 seed"
        if self.negligible:
            return "negligible"
        if not self.established:
            return "not established"
        if self.better is not None:
            return f"{self.better} better"
        return f"{self.names[0] if self.difference > 0 else self.names[1]} higher"

    @property
    def verdict(self):
        """One line: which condition is better and by how much, or that no difference is established."""
        name_a, name_b = self.names
        units, level = _unit_words(self.unit), f"{100 * self.confidence:g}% CI"
        if self.n == 1:
            u = self.unit if self.unit in ("", "%") else f" {self.unit}"
            return (f"1 seed: no interval ({name_a} {self._f(self.mean_a)}{u} vs {name_b} {self._f(self.mean_b)}{u}; "
                    "run at least 2 seeds for a verdict)")
        if self.degenerate:
            return (f"not established: all {self.n} pairs differ by exactly {self._f(self.difference, True)}{units} "
                    f"({name_a} - {name_b}), so the seed-to-seed noise and with it the interval cannot be estimated; "
                    "run more seeds or a larger test set")
        if self.negligible:
            margin = f"{self.margin:g}{' point' if units == ' points' and self.margin == 1 else units}"
            return (f"no difference that matters: the {level} of {name_a} minus {name_b}, {self._f(self.low, True)} "
                    f"to {self._f(self.high, True)}{units}, lies within ±{margin}, the smallest difference that "
                    f"matters here (n = {self.n})")
        if self.difference == 0:
            return (f"not established: {name_a} and {name_b} have the same mean ({level} of the difference "
                    f"{self._f(self.low)} to {self._f(self.high)}{units}, n = {self.n})")
        # Express everything as the lead of the one that is ahead (higher, or better if we know the direction).
        ahead, behind, size, span = self._lead()
        known = self.lower_is_better is not None
        if self.established:
            word = "better" if known else "higher"
            return f"{ahead} is {word} than {behind} by {size} ({level} {span}, n = {self.n})"
        return (f"not established: {ahead} is {'ahead of' if known else 'higher than'} {behind} by {size} on average, "
                f"but the {level} of that lead, {span}, includes 0 (n = {self.n})")

    def _lead(self):
        """(ahead, behind, the size of the lead, its interval "lo to hi"): the lead of the one that is ahead."""
        a_ahead = (self.difference < 0) if self.lower_is_better else (self.difference > 0)
        ahead, behind = self.names if a_ahead else self.names[::-1]
        size = f"{abs(self.difference):.{self.decimals}f}{_unit_words(self.unit)}"
        if self.n == 1:
            return ahead, behind, size, None
        lo, hi = (self.low, self.high) if (self.difference > 0) else (-self.high, -self.low)
        return ahead, behind, size, f"{self._f(lo)} to {self._f(hi)}"

    def conclusion(self, if_a_better, if_b_better, otherwise):
        """The sentence that matches the numbers: ``if_a_better`` when ``a`` is established better, ``if_b_better``
        when ``b`` is, else ``otherwise`` (not established, negligible, or 1 seed), with the numbers filled in.

        Fields a sentence can use: ``{a}``, ``{b}`` (the names), ``{better}``, ``{worse}`` (the names in the
        order of the verdict: the one ahead first), ``{by}`` (the size of the lead, e.g. ``0.18 points``),
        ``{ci}`` (its interval, e.g. ``95% CI 0.10 to 0.26``), ``{mean_a}``, ``{mean_b}``, ``{n}`` and
        ``{verdict}`` (the whole verdict line). With ``lower_is_better=None`` "better" means "higher". ::

            c.conclusion(if_a_better="{a} wins by {by} ({ci}).", if_b_better="{b} wins by {by} ({ci}).",
                         otherwise="No winner at this budget: {verdict}.")
        """
        for label, text in (("if_a_better", if_a_better), ("if_b_better", if_b_better), ("otherwise", otherwise)):
            if not isinstance(text, str):
                raise ValueError(f"{label} must be a sentence (a str), got {type(text).__name__}")
        ahead, behind, by, span = self._lead()
        ci = f"{100 * self.confidence:g}% CI {span}" if span else "no interval (1 seed)"
        if not self.established:
            text = otherwise
        else:  # the one ahead is the better one (or the higher one, when the direction is not known)
            text = if_a_better if ahead == self.names[0] else if_b_better
        fields = dict(a=self.names[0], b=self.names[1], better=ahead, worse=behind, by=by, ci=ci,
                      mean_a=self._f(self.mean_a), mean_b=self._f(self.mean_b), n=self.n, verdict=self.verdict)
        try:
            return text.format(**fields)
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"conclusion {text!r}: cannot fill it in ({type(err).__name__}: {err}); the fields are "
                             f"{', '.join('{' + k + '}' for k in fields)}") from None

    def record(self, name, claim=False):
        """Record this verdict under ``name`` (``lecture_utils.record.record_verdict``); returns the comparison."""
        from lecture_utils.record import record_verdict

        record_verdict(name, self, claim=claim)
        return self

    def row(self):
        """The comparison's cells for a table: name, both means, difference, interval, n, verdict."""
        interval = "-" if self.n == 1 else f"{self._f(self.low, True)} to {self._f(self.high, True)}"
        return [self.title, self._f(self.mean_a), self._f(self.mean_b), self._f(self.difference, True),
                interval, str(self.n), self.verdict]

    def header(self):
        u = f" ({self.unit})" if self.unit else ""
        return ["comparison (a vs b)", f"mean a{u}", f"mean b{u}", "a - b",
                f"{100 * self.confidence:g}% CI of a - b", "n", "verdict"]

    def __str__(self):
        u = self.unit if self.unit in ("", "%") else f" {self.unit}"
        width = max(len(n) for n in self.names)
        return "\n".join([
            f"{self.title}: " + ("1 seed, no interval" if self.n == 1 else
                                 f"{self.n} paired seeds, Student t on the per-seed differences"),
            f"  {self.names[0]:<{width}}  mean {self._f(self.mean_a)}{u}",
            f"  {self.names[1]:<{width}}  mean {self._f(self.mean_b)}{u}",
            f"  {self.names[0]} - {self.names[1]} = {self._f(self.difference, True)}{_unit_words(self.unit)}, "
            f"{self.interval_text}",
            f"  {self.verdict}",
        ])

    def __repr__(self):
        return f"<Comparison {self.title}: {self.verdict}>"

    def _repr_html_(self):
        return _html_table(self.header(), [self.row()])


def _check_margin(margin):
    if margin is None:
        return None
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin <= 0:
        raise ValueError(f"margin must be a positive number in the values' unit (the smallest difference that "
                         f"matters) or None, got {margin!r}")
    return float(margin)


def paired_comparison(a, b, confidence=0.95, names=("a", "b"), lower_is_better=None, unit="", digits=None,
                      margin=None):
    """Compare two conditions run with the same seeds (``a[i]`` and ``b[i]`` share seed ``i``).

    ``lower_is_better``: True for errors, losses and times, False for
    accuracies; with None the verdict says "higher", never "better".
    ``unit`` is shown with the values ("%" differences read as points).
    Returns a ``Comparison`` with ``mean_a``, ``mean_b``, ``difference``
    (mean of ``a - b``), ``low`` and ``high`` (its interval), ``n``,
    ``confidence``, ``established`` (the interval excludes 0), ``better`` (the
    better condition's name, or None), ``outcome`` (the verdict in a word) and
    ``verdict`` (one line). One seed each is allowed: then ``low`` and ``high``
    are None, nothing is established and the verdict says "1 seed: no interval".
    ``digits``: digits after the point in the text (None: from the interval's size).
    ``margin``: the smallest difference that matters, in the values' unit (e.g. 0.1 for 0.1 points of error).
    When the whole interval lies within ``(-margin, margin)`` the verdict is "no difference that matters"
    (``negligible`` True, ``outcome`` ``"negligible"``, nothing established), even where it excludes 0: an
    equivalence verdict, which two runs can agree on where a tiny lead would flip. None (default): no margin.
    """
    confidence = _check_confidence(confidence)
    margin = _check_margin(margin)
    if isinstance(names, str) or len(names) != 2 or len(set(map(str, names))) != 2:
        raise ValueError(f"names must be two different condition names, e.g. ('affine', 'elastic'), got {names!r}")
    names = tuple(map(str, names))
    if lower_is_better not in (None, True, False):
        raise ValueError(f"lower_is_better must be True (errors, losses), False (accuracies) or None, "
                         f"got {lower_is_better!r}")
    a, b = _values(a, f"results of {names[0]!r}"), _values(b, f"results of {names[1]!r}")
    if len(a) != len(b):
        raise ValueError(f"{names[0]!r} has {len(a)} results and {names[1]!r} has {len(b)}: a paired comparison "
                         "needs one result per seed for both, in the same seed order")
    if len(a) < 1:
        raise ValueError(f"{names[0]!r} vs {names[1]!r}: no results; give one result per seed (1 seed shows the "
                         "values, at least 2 paired seeds give an interval)")
    return Comparison(a, b, confidence, names, lower_is_better, unit, _check_digits(digits), margin)


def seeds_needed(sd, gap, power=0.8, confidence=0.95, most=10_000):
    """Paired seeds needed to establish a mean difference ``gap`` whose per-seed differences have std ``sd``.

    The smallest n >= 2 at which the paired t test (the interval of ``paired_comparison``) excludes 0 with
    probability ``power`` when the true mean difference is ``gap``: with t_c the two-sided critical value of
    Student's t at n - 1 degrees of freedom, power = P(|T| > t_c) for T noncentral t with n - 1 degrees of
    freedom and noncentrality gap / sd * sqrt(n). Returns ``math.inf`` when even ``most`` seeds are not
    enough (a gap of 0 never is). Plan with an ``sd`` measured on a few seeds, knowing it is itself uncertain.
    """
    for name, value in (("sd", sd), ("gap", gap)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not math.isfinite(value) \
                or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0 (points, seconds, ...), got {value!r}")
    confidence = _check_confidence(confidence)
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not 0 < power < 1:
        raise ValueError(f"power must be a number between 0 and 1 (e.g. 0.8), got {power!r}")
    if gap == 0:
        return math.inf
    if sd == 0:
        return 2
    for n in range(2, most + 1):
        t_c = _scipy_stats.t.ppf(0.5 + confidence / 2, df=n - 1)
        shift = gap / sd * math.sqrt(n)
        reached = _scipy_stats.nct.sf(t_c, n - 1, shift) + _scipy_stats.nct.cdf(-t_c, n - 1, shift)
        if reached >= power:
            return n
    return math.inf


class Table(list):
    """A list of rows that prints as an aligned text table and shows as HTML in a notebook."""

    def __init__(self, header, rows, items=(), title=None):
        super().__init__(items)
        self.header, self.rows, self.title = header, rows, title

    def __str__(self):
        cells = [self.header, *self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.header))]

        def line(r):
            return "  ".join(c.ljust(w) if i in (0, len(r) - 1) else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths))).rstrip()

        out = [self.title] if self.title else []
        return "\n".join(out + [line(self.header), line(["-" * w for w in widths]), *map(line, self.rows)])

    def __repr__(self):
        return str(self)

    def _repr_html_(self):
        return _html_table(self.header, self.rows, self.title)

    def record(self, prefix="", claim=False, names=None):
        """Record every comparison's verdict (``lecture_utils.record.record_verdict``); returns the table.

        Each row is recorded as ``prefix`` + its title (``"none vs affine"``), or under ``names`` (one per row).
        """
        if not all(isinstance(c, Comparison) for c in self) or not self:
            raise ValueError("only a table of comparisons (from compare) holds verdicts to record")
        if not isinstance(prefix, str):
            raise ValueError(f"prefix must be a str (put before each row's title), got {prefix!r}")
        if names is None:
            names = [prefix + c.title for c in self]
        elif isinstance(names, str) or len(names) != len(self):
            raise ValueError(f"names must give one name per row ({len(self)} rows), got {names!r}")
        for name, c in zip(names, self):
            c.record(name, claim=claim)
        return self


def _html_table(header, rows, title=None):
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    caption = f"<caption>{esc(title)}</caption>" if title else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _check_results(results):
    if not isinstance(results, dict) or not results:
        raise ValueError(f"results must be a non-empty dict {{condition name: [one result per seed]}}, "
                         f"got {type(results).__name__}")
    return {str(k): _values(v, f"results of {k!r}") for k, v in results.items()}


def compare(results, baseline=None, pairs=None, confidence=0.95, lower_is_better=None, unit="", digits=None,
            margin=None):
    """Paired comparisons between conditions of ``results`` (``{name: [one result per seed]}``).

    ``pairs`` lists ``(a, b)`` names to compare (``a - b``); else every other
    condition against ``baseline``; else every pair in the dict's order.
    Returns a ``Table`` of ``Comparison`` objects (it prints and shows as a
    table; ``table.record("prefix: ")`` records every verdict). One seed per
    condition is allowed: every row then says "1 seed: no interval". ``margin``: as in ``paired_comparison``.
    """
    values = _check_results(results)
    _check_digits(digits)
    _check_margin(margin)
    names = list(values)
    if pairs is None:
        if baseline is not None:
            if baseline not in values:
                raise ValueError(f"baseline {baseline!r} is not a condition of results: known are {', '.join(names)}")
            pairs = [(baseline, n) for n in names if n != baseline]
        else:
            pairs = [(x, y) for i, x in enumerate(names) for y in names[i + 1:]]
    pairs = list(pairs)
    for pair in pairs:
        if len(pair) != 2 or any(p not in values for p in pair):
            raise ValueError(f"pair {pair!r} must name two conditions of results: known are {', '.join(names)}")
    if not pairs:
        raise ValueError("nothing to compare: results need at least two conditions")
    items = [paired_comparison(values[x], values[y], confidence, (x, y), lower_is_better, unit, digits, margin)
             for x, y in pairs]
    return Table(items[0].header(), [c.row() for c in items], items)


def summarize(results, unit="", digits=2):
    """Per condition of ``{name: [one result per seed]}``: n, mean, std (n - 1 in the denominator), min, max.

    One seed is allowed (std shows as "-"). Returns a ``Table`` whose items are
    dicts with those keys.
    """
    values = _check_results(results)
    if _check_digits(digits) is None:
        raise ValueError(f"digits must be an int from 0 to {MAX_DIGITS} (digits after the point), got None")
    u = f" ({unit})" if unit else ""
    header = ["condition", "n", f"mean{u}", "std", "min", "max"]
    items, rows = [], []
    for name, v in values.items():
        if len(v) == 0:
            raise ValueError(f"results of {name!r} are empty: every condition needs at least one result")
        std = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
        item = dict(condition=name, n=len(v), mean=float(v.mean()), std=std, min=float(v.min()), max=float(v.max()))
        items.append(item)
        f = [f"{item[k]:.{digits}f}" for k in ("mean", "std", "min", "max")]
        rows.append([name, str(len(v)), f[0], f[1] if len(v) > 1 else "-", f[2], f[3]])
    return Table(header, rows, items)
