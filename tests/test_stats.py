"""lecture_utils.stats on constructed data: known differences found, stated error rates kept, bad input refused."""

import math
import re

import numpy as np
import pytest

from lecture_utils.stats import compare, paired_comparison, summarize, t_interval

DRAWS = 20000  # simulated experiments per rate check; the binomial sd of a 5% rate is then 0.15 points


def paired_draws(rng, n, true_difference, seed_sd=1.0, noise_sd=0.2, draws=DRAWS):
    """``draws`` experiments of ``n`` paired seeds: a shared per-seed effect plus independent noise per condition."""
    seed_effect = rng.normal(0, seed_sd, (draws, n))
    a = 3.0 + true_difference + seed_effect + rng.normal(0, noise_sd, (draws, n))
    b = 3.0 + seed_effect + rng.normal(0, noise_sd, (draws, n))
    return a, b


@pytest.mark.parametrize("n", [2, 3, 5, 10])
@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_interval_covers_the_true_difference_at_the_stated_rate(n, confidence):
    rng = np.random.default_rng(n)
    a, b = paired_draws(rng, n, true_difference=0.3)
    _, low, high = t_interval(a - b, confidence)
    coverage = np.mean((low <= 0.3) & (0.3 <= high))
    assert abs(coverage - confidence) < 0.01, coverage


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_identical_conditions_are_called_different_at_about_the_stated_rate(n):
    rng = np.random.default_rng(100 + n)
    a, b = paired_draws(rng, n, true_difference=0.0)
    _, low, high = t_interval(a - b, 0.95)
    called = np.mean((low > 0) | (high < 0))
    assert 0.04 < called < 0.06, called


def test_the_vectorised_interval_is_the_one_paired_comparison_reports():
    rng = np.random.default_rng(7)
    a, b = paired_draws(rng, 5, true_difference=0.3, draws=200)
    mean, low, high = t_interval(a - b, 0.95)
    for i in range(len(a)):
        c = paired_comparison(a[i], b[i])
        assert (c.difference, c.low, c.high) == pytest.approx((mean[i], low[i], high[i]), rel=1e-12)
        assert c.established == bool(low[i] > 0 or high[i] < 0)


def test_a_known_difference_is_found_with_its_direction_and_the_better_one_named():
    # 5 seeds of a clear effect: elastic errs 0.4 points less than affine, seed noise 0.05.
    rng = np.random.default_rng(0)
    found = 0
    for _ in range(200):
        shared = rng.normal(0, 0.3, 5)
        affine = 1.5 + shared + rng.normal(0, 0.05, 5)
        elastic = 1.1 + shared + rng.normal(0, 0.05, 5)
        c = paired_comparison(affine, elastic, names=("affine", "elastic"), lower_is_better=True, unit="%")
        found += c.established
        if c.established:
            assert c.difference > 0 and c.better == "elastic"
            assert c.verdict.startswith("elastic is better than affine by ")
            assert " points (95% CI " in c.verdict
    assert found >= 195  # power is essentially 1 here


def test_pairing_is_what_makes_a_small_difference_visible():
    """A 0.2 effect under a seed spread of 1: paired, it is established; the unpaired spread would hide it."""
    rng = np.random.default_rng(3)
    shared = rng.normal(0, 1.0, 6)
    a = 2.0 + shared + rng.normal(0, 0.02, 6)
    b = 2.2 + shared + rng.normal(0, 0.02, 6)
    c = paired_comparison(a, b, names=("affine", "elastic"), lower_is_better=False)
    assert c.established and c.better == "elastic"
    assert a.std(ddof=1) > 5 * abs(c.difference)  # each condition's own spread is far larger than the gap


def test_numbers_against_a_hand_computed_t_interval():
    a, b = [1.52, 1.43, 1.50], [1.38, 1.24, 1.30]
    c = paired_comparison(a, b, names=("affine", "elastic"), lower_is_better=True, unit="%")
    d = np.array(a) - np.array(b)  # 0.14, 0.19, 0.20: mean 0.17667, sd 0.032146
    half = 4.302652729911275 * d.std(ddof=1) / np.sqrt(3)  # t(0.975, df=2)
    assert (c.mean_a, c.mean_b, c.n) == pytest.approx((1.48333333, 1.30666667, 3))
    assert (c.difference, c.low, c.high) == pytest.approx((d.mean(), d.mean() - half, d.mean() + half))
    assert c.established and c.better == "elastic"
    assert c.verdict == "elastic is better than affine by 0.177 points (95% CI 0.097 to 0.257, n = 3)"
    text = str(c)
    assert "affine - elastic = +0.177 points, 95% CI +0.097 to +0.257" in text
    assert "<table>" in c._repr_html_() and "elastic is better than affine" in c._repr_html_()


def test_not_established_says_so_and_names_who_is_ahead():
    c = paired_comparison([1.52, 1.43], [1.38, 1.44], names=("affine", "elastic"), lower_is_better=True, unit="%")
    assert not c.established and c.better is None
    assert c.verdict.startswith("not established: elastic is ahead of affine by 0.07 points on average")
    assert "includes 0 (n = 2)" in c.verdict


def test_higher_is_better_and_direction_unknown():
    conv, fc = [97.0, 98.0, 96.0], [95.0, 95.5, 94.0]
    acc = paired_comparison(conv, fc, names=("conv", "fc"), lower_is_better=False, unit="%")
    assert acc.better == "conv" and acc.verdict.startswith("conv is better than fc by 2.17 points")
    err = paired_comparison(conv, fc, names=("conv", "fc"), lower_is_better=True, unit="%")
    assert err.better == "fc" and err.verdict.startswith("fc is better than conv by 2.17 points")
    neutral = paired_comparison(conv, fc, names=("conv", "fc"))
    assert neutral.better is None and neutral.established
    assert neutral.verdict.startswith("conv is higher than fc by 2.17") and "better" not in neutral.verdict


def test_identical_results_are_not_established():
    c = paired_comparison([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], names=("x", "y"), lower_is_better=True)
    assert not c.established and c.better is None and c.difference == 0
    assert c.verdict.startswith("not established: all 3 pairs differ by exactly +0.00")


def test_a_constant_difference_is_not_an_established_one():
    """Two seeds whose accuracies differ by exactly 1.5 points each: zero spread is no evidence of no noise."""
    c = paired_comparison([14.0, 14.8], [12.5, 13.3], names=("expanded", "conv"), lower_is_better=False, unit="%")
    assert c.degenerate and not c.established and c.better is None
    assert (c.low, c.high) == (c.difference, c.difference) == pytest.approx((1.5, 1.5))
    assert c.verdict.startswith("not established: all 2 pairs differ by exactly +1.5 points (expanded - conv)")


def test_unequal_means_with_spread_are_not_degenerate():
    c = paired_comparison([1.0, 2.0], [1.0, 2.5], names=("x", "y"), lower_is_better=True)
    assert not c.degenerate and c.verdict.startswith("not established: x is ahead of y by 0.2")
    same = paired_comparison([1.0, 2.0], [1.5, 1.5], names=("x", "y"))
    assert same.difference == 0 and same.verdict.startswith("not established: x and y have the same mean")


def test_compare_pairs_baseline_and_all_pairs():
    r = {"none": [3.77, 4.07, 3.9], "affine": [1.43, 1.52, 1.5], "elastic": [1.24, 1.38, 1.3]}
    table = compare(r, pairs=[("none", "affine"), ("affine", "elastic")], lower_is_better=True, unit="%")
    assert [c.title for c in table] == ["none vs affine", "affine vs elastic"]
    assert [c.better for c in table] == ["affine", "elastic"]
    text = str(table).splitlines()
    assert text[0].startswith("comparison (a vs b)") and "95% CI of a - b" in text[0]
    assert "affine is better than none" in text[2] and "elastic is better than affine" in text[3]
    assert table._repr_html_().count("<tr>") == 3
    assert [c.title for c in compare(r, baseline="none")] == ["none vs affine", "none vs elastic"]
    assert [c.title for c in compare(r)] == ["none vs affine", "none vs elastic", "affine vs elastic"]


def test_summarize():
    table = summarize({"none": [3.77, 4.07], "elastic": [1.24]}, unit="%")
    row = dict(table[0])
    assert row.pop("condition") == "none"  # pytest >= 9.2's approx refuses strings: compare the numbers only
    assert row == pytest.approx(dict(n=2, mean=3.92, std=0.212132, min=3.77, max=4.07), rel=1e-5)
    assert table[1]["n"] == 1 and np.isnan(table[1]["std"])
    lines = str(table).splitlines()
    assert lines[0].split() == ["condition", "n", "mean", "(%)", "std", "min", "max"]
    assert lines[2].split() == ["none", "2", "3.92", "0.21", "3.77", "4.07"]
    assert lines[3].split() == ["elastic", "1", "1.24", "-", "1.24", "1.24"]
    assert "<table>" in table._repr_html_()


@pytest.mark.parametrize("a, b, message", [
    ([], [], "no results; give one result per seed"),
    ([1.0, 2.0], [1.0, 2.0, 3.0], "has 2 results and 'b' has 3"),
    ([1.0, float("nan")], [1.0, 2.0], "NaN or infinite at positions [1]"),
    ([1.0, 2.0], [float("inf"), 2.0], "NaN or infinite at positions [0]"),
    ("ab", [1.0, 2.0], "must be a sequence of numbers"),
    ([[1.0, 2.0]], [[1.0, 2.0]], "must be a flat sequence"),
])
def test_bad_input_is_a_clear_error(a, b, message):
    with pytest.raises(ValueError) as err:
        paired_comparison(a, b)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(confidence=95), "confidence must be a number between 0 and 1"),
    (dict(confidence=0.0), "confidence must be a number between 0 and 1"),
    (dict(names=("x", "x")), "two different condition names"),
    (dict(names="ab"), "two different condition names"),
    (dict(lower_is_better="yes"), "lower_is_better must be True"),
    (dict(digits=-1), "digits must be None (automatic) or an int from 0 to 15"),
    (dict(digits=2.5), "digits must be None (automatic) or an int from 0 to 15"),
    (dict(digits=True), "digits must be None (automatic) or an int from 0 to 15"),
    (dict(digits=99), "digits must be None (automatic) or an int from 0 to 15"),
])
def test_bad_options_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        paired_comparison([1.0, 2.0], [1.5, 2.5], **kwargs)
    assert "\n" not in str(err.value)


def test_bad_digits_in_compare_and_summarize_are_one_line_errors():
    r = {"a": [1.0, 2.0], "b": [1.5, 2.4]}
    for call in (lambda: compare(r, digits=-1), lambda: summarize(r, digits=-1), lambda: summarize(r, digits=None)):
        with pytest.raises(ValueError, match="digits must be") as err:
            call()
        assert "\n" not in str(err.value)
    assert "1.50" in str(compare(r, digits=2)) and "1.500" in str(summarize(r, digits=3))


def test_bad_results_dicts():
    with pytest.raises(ValueError, match="non-empty dict"):
        summarize([])
    with pytest.raises(ValueError, match="baseline 'x' is not a condition"):
        compare({"a": [1, 2], "b": [2, 3]}, baseline="x")
    with pytest.raises(ValueError, match="pair .* must name two conditions"):
        compare({"a": [1, 2], "b": [2, 3]}, pairs=[("a", "c")])
    with pytest.raises(ValueError, match="at least two conditions"):
        compare({"a": [1, 2]})
    with pytest.raises(ValueError, match="NaN"):
        summarize({"a": [1.0, float("nan")]})
    with pytest.raises(ValueError, match="empty"):
        summarize({"a": []})


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    c = paired_comparison(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.5, 2.4, 3.6]))
    assert c.n == 3 and c.difference == pytest.approx(-0.5)


# ---------------------------------------------------------------- one seed, scale, scipy

def test_one_seed_per_condition_gives_the_values_without_an_interval():
    c = paired_comparison([1.52], [1.38], names=("affine", "elastic"), lower_is_better=True, unit="%")
    assert c.n == 1 and not c.established and c.better is None and not c.degenerate
    assert c.low is None and c.high is None and c.difference == pytest.approx(0.14)
    assert c.verdict.startswith("1 seed: no interval (affine 1.52% vs elastic 1.38%")
    assert c.outcome == "1 seed" and c.interval_text == "no interval (1 seed)"
    assert "1 seed, no interval" in str(c)
    table = compare({"none": [3.9], "affine": [1.5], "elastic": [1.3]}, baseline="none", lower_is_better=True)
    assert [row[-1].startswith("1 seed: no interval") for row in table.rows] == [True, True]
    assert all(not t.established and t.low is None for t in table)
    assert "1 seed: no interval" in str(table) and "1 seed: no interval" in table._repr_html_()


def test_degenerate_is_decided_the_same_in_any_unit():
    """Timings in seconds and the same timings in nanoseconds: the same verdict (the threshold was absolute)."""
    a_s = np.array([1.0e-6, 1.2e-6, 1.1e-6, 1.3e-6])
    d_s = np.array([1.0e-9, 1.1e-9, 1.2e-9, 1.05e-9])  # a small, steady, real difference with some spread
    runs = {unit: paired_comparison(a_s * k, (a_s - d_s) * k, names=("old", "new"), lower_is_better=True, unit=unit)
            for unit, k in (("s", 1.0), ("ns", 1e9))}
    s, ns = runs["s"], runs["ns"]
    assert not s.degenerate and not ns.degenerate
    assert s.established and ns.established and s.better == ns.better == "new" and s.outcome == ns.outcome
    assert (ns.low, ns.high) == pytest.approx((s.low * 1e9, s.high * 1e9), rel=1e-6)
    assert float(s.verdict.split(" by ")[1].split()[0]) > 0  # the text shows the difference, not 0.000000
    # a difference that is the same in every pair up to float rounding is degenerate in both units
    for k in (1.0, 1e9, 1e-9):
        base = np.array([14.0, 14.8, 13.1]) * k
        c = paired_comparison(base, base - 1.5 * k, names=("x", "y"))
        assert c.degenerate and not c.established, k


def test_interval_matches_scipy_ttest_rel():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(11)
    for n in (2, 3, 5, 8):
        a, b = rng.normal(2, 1, n), rng.normal(2.3, 1, n)
        for confidence in (0.9, 0.95, 0.99):
            c = paired_comparison(a, b, confidence=confidence)
            ci = scipy_stats.ttest_rel(a, b).confidence_interval(confidence)
            assert (c.low, c.high) == pytest.approx((ci.low, ci.high), rel=1e-12)
            assert c.established == (scipy_stats.ttest_rel(a, b).pvalue < 1 - confidence)


def test_outcome_words():
    err = paired_comparison([2.0, 2.2, 2.1], [1.0, 1.1, 1.05], names=("plain", "bn"), lower_is_better=True)
    assert err.outcome == "bn better"
    acc = paired_comparison([2.0, 2.2, 2.1], [1.0, 1.1, 1.05], names=("plain", "bn"))
    assert acc.outcome == "plain higher"
    assert paired_comparison([1.0, 2.0], [1.1, 1.8]).outcome == "not established"
    assert paired_comparison([1.0, 2.0], [0.0, 1.0]).outcome == "not established"  # degenerate


# ---------------------------------------------------------------- conclusions that follow the numbers

SENTENCES = dict(if_a_better="{a} wins by {by} ({ci}).", if_b_better="{b} wins by {by} ({ci}).",
                 otherwise="No winner between {a} and {b}: {verdict}")


def test_conclusion_flips_with_the_numbers():
    a_wins = paired_comparison([1.0, 1.1, 1.05], [2.0, 2.2, 2.1], names=("elastic", "affine"), lower_is_better=True,
                               unit="%")
    assert a_wins.conclusion(**SENTENCES) == "elastic wins by 1.05 points (95% CI 0.93 to 1.17)."
    b_wins = paired_comparison([2.0, 2.2, 2.1], [1.0, 1.1, 1.05], names=("affine", "elastic"), lower_is_better=True,
                               unit="%")
    assert b_wins.conclusion(**SENTENCES).startswith("elastic wins by 1.05 points (95% CI ")
    higher = paired_comparison([2.0, 2.2, 2.1], [1.0, 1.1, 1.05], names=("x", "y"), lower_is_better=False)
    assert higher.conclusion(**SENTENCES).startswith("x wins by")
    unknown = paired_comparison([2.0, 2.2, 2.1], [1.0, 1.1, 1.05], names=("x", "y"))
    assert unknown.conclusion(**SENTENCES).startswith("x wins by")  # direction unknown: "better" = higher
    tie = paired_comparison([1.0, 2.0], [1.1, 1.8], names=("x", "y"))
    assert tie.conclusion(**SENTENCES) == "No winner between x and y: " + tie.verdict
    one = paired_comparison([1.0], [2.0], names=("x", "y"), lower_is_better=True)
    assert one.conclusion(**SENTENCES).startswith("No winner between x and y: 1 seed: no interval")
    assert one.conclusion("", "", "{better} by {by}, {ci}") == "x by 1.0, no interval (1 seed)"


def test_conclusion_with_an_unknown_field_is_a_one_line_error():
    c = paired_comparison([1.0, 1.1, 1.05], [2.0, 2.2, 2.1], names=("x", "y"), lower_is_better=True)
    with pytest.raises(ValueError, match=r"cannot fill it in .*the fields are \{a\}, \{b\}") as err:
        c.conclusion(if_a_better="{winner} wins", if_b_better="", otherwise="")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="if_b_better must be a sentence"):
        c.conclusion("x", None, "z")


def test_seeds_needed_is_the_paired_t_tests_power_calculation():
    from lecture_utils.stats import seeds_needed, t_interval

    # Textbook values of the one-sample (paired) t test at 5%, power 80%: effect size 1 -> 10, 0.5 -> 34.
    assert seeds_needed(1.0, 1.0) == 10
    assert seeds_needed(0.2, 0.1) == 34
    assert seeds_needed(0.2, 0.0) == math.inf and seeds_needed(0.0, 0.3) == 2
    assert seeds_needed(1.0, 0.01, most=50) == math.inf
    # Simulated: with that many seeds, about 80% of the intervals exclude 0; with 4 fewer, clearly less.
    rng = np.random.default_rng(0)
    for n, low, high in ((10, 0.76, 0.84), (6, 0.35, 0.6)):
        _, lo, hi = t_interval(rng.normal(1.0, 1.0, size=(20_000, n)))
        assert low < ((lo > 0) | (hi < 0)).mean() < high
    for bad in (dict(sd=-1, gap=1), dict(sd=1, gap=float("nan")), dict(sd=1, gap=1, power=1.0)):
        with pytest.raises(ValueError):
            seeds_needed(**bad)


# ---------------------------------------------------------------- a margin: the smallest difference that matters

# L1's case in 06b: a lead of 0.017 points that the pairing resolves, far below what matters on a test error.
TINY_LEAD = ([12.00, 12.11, 12.19, 11.89, 11.93], [11.98, 12.09, 12.16, 11.88, 11.91])


def test_a_resolved_but_tiny_lead_is_negligible_within_a_margin():
    plain = paired_comparison(*TINY_LEAD, names=("fc", "+ L1"), lower_is_better=True, unit="%")
    assert plain.established and plain.outcome == "+ L1 better"  # without a margin: a "better" that flips easily
    c = paired_comparison(*TINY_LEAD, names=("fc", "+ L1"), lower_is_better=True, unit="%", margin=0.1)
    assert (c.low, c.high) == (plain.low, plain.high)  # the interval itself is unchanged
    assert c.negligible and not c.established and c.better is None and c.outcome == "negligible"
    assert c.verdict == ("no difference that matters: the 95% CI of fc minus + L1, +0.0112 to +0.0288 points, lies "
                         "within ±0.1 points, the smallest difference that matters here (n = 5)")
    one = paired_comparison(*TINY_LEAD, unit="%", margin=1)
    assert "lies within ±1 point, the smallest" in one.verdict
    same = paired_comparison([1.0, 2.0, 1.5], [1.01, 1.99, 1.5], margin=0.1)  # a mean difference of exactly 0
    assert same.outcome == "negligible" and same.verdict.startswith("no difference that matters")
    assert c.conclusion("a", "b", "none: {verdict}") == "none: " + c.verdict
    # the same data with its signs swapped, and an unresolved tie inside the margin, read the same
    assert paired_comparison(*TINY_LEAD[::-1], lower_is_better=True, margin=0.1).outcome == "negligible"
    assert paired_comparison([1.0, 2.0, 1.5], [1.01, 1.99, 1.5], margin=0.1).outcome == "negligible"


def test_an_interval_that_reaches_past_the_margin_is_judged_as_before():
    big = paired_comparison([2.0, 2.2, 2.1], [1.0, 1.1, 1.05], names=("plain", "bn"), lower_is_better=True, margin=0.1)
    assert big.outcome == "bn better" and not big.negligible
    wide = paired_comparison([1.0, 2.0], [1.1, 1.8], margin=0.1)  # interval wider than the margin: undecided
    assert wide.outcome == "not established" and not wide.negligible
    one = paired_comparison([1.0], [1.0], margin=0.1)
    assert one.outcome == "1 seed" and not one.negligible
    degenerate = paired_comparison([1.0, 2.0], [1.0, 2.0], margin=0.1)
    assert degenerate.outcome == "not established" and not degenerate.negligible


def test_compare_passes_the_margin_and_bad_margins_are_one_line_errors():
    table = compare({"fc": TINY_LEAD[0], "+ L1": TINY_LEAD[1]}, baseline="fc", lower_is_better=True, margin=0.1)
    assert table[0].outcome == "negligible"
    for bad in (0, -0.1, float("nan"), float("inf"), "0.1", True):
        with pytest.raises(ValueError, match=r"^margin must be a positive number .* got ") as err:
            paired_comparison(*TINY_LEAD, margin=bad)
        assert "\n" not in str(err.value)
        with pytest.raises(ValueError, match=r"^margin must be a positive number"):
            compare({"x": [1, 2], "y": [2, 3]}, margin=bad)
