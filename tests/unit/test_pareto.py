"""Pareto/NBD: the fit reproduces Fader & Hardie's note on CDNOW; the scipy-free closed forms match scipy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.special import hyp2f1

from detectors.fitting import fit_pareto_nbd, summarize
from detectors.pareto import ParetoParams, expected_orders, log_hyp2f1_next, p_alive
from schemas.decode import to_epoch_ms
from schemas.errors import ConfigError
from streams.offline.cdnow import read_cdnow

SAMPLE = Path(__file__).resolve().parents[2] / "tests" / "data" / "cdnow" / "CDNOW_sample.txt"
CAL_END = "1997-09-30T00:00:00Z"
WEEK = 7 * 86_400_000
#: Fader & Hardie (2005), "A Note on Deriving the Pareto/NBD Model and Related Expressions":
#: the CDNOW sample, 39-week calibration, weeks. Published to two decimals.
NOTE = {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67}
NOTE_PARAMS = ParetoParams(NOTE["r"], NOTE["alpha"], NOTE["s"], NOTE["beta"])


def test_the_fit_reproduces_the_published_pareto_nbd_on_the_cdnow_sample():
    orders = [(c, ms, v) for c, ms, v, _ in read_cdnow(SAMPLE)]
    fit = fit_pareto_nbd(summarize(orders, to_epoch_ms(CAL_END), WEEK), "weeks")
    assert fit.fit.converged, fit.fit.problem
    assert fit.params is not None
    for name, published in NOTE.items():
        assert getattr(fit.params, name) == pytest.approx(published, abs=0.005), name  # half the last digit
    assert fit.fit.log_likelihood == pytest.approx(-9595.0, abs=0.05)
    assert fit.fit.customers == 2357


@pytest.mark.parametrize("z", [0.0, 1e-6, 0.09, 0.5, 0.9, 0.99, 0.998])
@pytest.mark.parametrize(("a", "b"), [(1.16, 1.61), (1.2, 0.55), (3.2, 1.6), (40.5, 39.9), (150.0, 2.0), (5.0, 5.9)])
def test_the_series_2f1_matches_scipy(a, b, z):
    assert log_hyp2f1_next(a, b, z) == pytest.approx(math.log(hyp2f1(a, b, a + 1, z)), rel=1e-11, abs=1e-12)


def test_the_series_stays_finite_where_the_plain_one_overflows():
    """A customer with 700 repeat days: 2F1 itself is beyond double range, its log is not."""
    value = log_hyp2f1_next(701.0, 700.5, 0.9)
    assert math.isfinite(value)
    assert value == pytest.approx(-699.5 * math.log1p(-0.9) + math.log(hyp2f1(1.0, 1.5, 702.0, 0.9)), rel=1e-12)


def test_the_series_refuses_arguments_outside_its_case():
    for args in ((1.0, 2.5, 0.5), (1.0, 0.5, 1.0), (1.0, 0.5, -0.1), (0.0, 0.5, 0.5)):
        with pytest.raises(ValueError, match="2F1"):
            log_hyp2f1_next(*args)


def _scipy_view(q: ParetoParams, x: float, t_x: float, t: float, h: float) -> tuple[float, float]:
    """P(alive) and expected orders straight from the note's formulas, scipy's 2F1, no transformation."""
    r, alpha, s, beta = q.r, q.alpha, q.s, q.beta
    w = r + s + x
    big, b2 = (alpha, s + 1) if alpha >= beta else (beta, r + x)
    gap = abs(alpha - beta)
    a0 = (hyp2f1(w, b2, w + 1, gap / (big + t_x)) / (big + t_x) ** w
          - hyp2f1(w, b2, w + 1, gap / (big + t)) / (big + t) ** w)
    alive = 1 / (1 + s / w * (alpha + t) ** (r + x) * (beta + t) ** s * a0)
    e = (r + x) * (beta + t) / ((alpha + t) * (s - 1)) * (1 - ((beta + t) / (beta + t + h)) ** (s - 1)) * alive
    return alive, e


@pytest.mark.parametrize("q", [NOTE_PARAMS, ParetoParams(0.6, 8.0, 1.7, 30.0), ParetoParams(0.4, 40.0, 0.8, 2.0),
                               ParetoParams(0.5, 5.0, 1.0, 5.0)])
@pytest.mark.parametrize(("x", "t_x", "t"), [(0, 0.0, 38.86), (0, 0.0, 0.0), (1, 2.0, 30.0), (3, 30.43, 38.86),
                                              (12, 35.0, 36.0), (28, 38.0, 38.86)])
def test_closed_forms_match_scipy(q, x, t_x, t):
    alive, e = _scipy_view(q, x, t_x, t, 39.0) if q.s != 1.0 else (None, None)
    if alive is not None:
        assert p_alive(q, x, t_x, t) == pytest.approx(alive, rel=1e-9)
        assert expected_orders(q, x, t_x, t, 39.0) == pytest.approx(e, rel=1e-9)
    else:  # s = 1: the closed form's limit, (r+x)(beta+T)/(alpha+T) log((beta+T+h)/(beta+T)) P(alive)
        limit = (q.r + x) * (q.beta + t) / (q.alpha + t) * math.log((q.beta + t + 39.0) / (q.beta + t))
        assert expected_orders(q, x, t_x, t, 39.0) == pytest.approx(limit * p_alive(q, x, t_x, t), rel=1e-9)
        near = ParetoParams(q.r, q.alpha, 1.0 + 1e-7, q.beta)
        assert expected_orders(near, x, t_x, t, 39.0) == pytest.approx(expected_orders(q, x, t_x, t, 39.0), rel=1e-6)


def test_a_one_time_buyer_can_already_be_gone():
    """What BG/NBD cannot say (it gives every one-day buyer P(alive) = 1) and why risk ranks by Pareto/NBD."""
    q = NOTE_PARAMS
    assert p_alive(q, 0, 0.0, 0.0) == pytest.approx(1.0)
    fresh, old = p_alive(q, 0, 0.0, 2.0), p_alive(q, 0, 0.0, 38.0)
    assert 0 < old < fresh < 1
    assert expected_orders(q, 0, 0.0, 38.0, 39.0) < expected_orders(q, 0, 0.0, 2.0, 39.0)
    # the same silence is more telling for a frequent buyer than for a one-time one
    assert p_alive(q, 10, 10.0, 38.0) < old
    # and P(alive) is 1 right after an order, whatever came before
    assert p_alive(q, 10, 38.0, 38.0) == pytest.approx(1.0)


def test_many_orders_and_long_silences_stay_finite():
    q = NOTE_PARAMS
    assert p_alive(q, 2000, 1.0, 1000.0) == 0.0
    assert 0.0 <= expected_orders(q, 2000, 1.0, 1000.0, 39.0) < 1e-12
    assert math.isfinite(expected_orders(q, 500, 520.0, 520.0, 39.0))


def test_parameters_are_checked():
    with pytest.raises(ConfigError, match="pareto_nbd parameter s must be a positive number"):
        ParetoParams(0.5, 1.0, -1.0, 1.0)
    with pytest.raises(ConfigError, match="more than 1000 times apart"):
        ParetoParams(0.5, 0.01, 1.0, 11.0)
    with pytest.raises(ConfigError, match="missing s, beta"):
        ParetoParams.from_mapping({"r": 1, "alpha": 1}, "weeks")
    assert ParetoParams.from_mapping({**NOTE, "log_likelihood": -9595.0}, "weeks") == NOTE_PARAMS


def test_the_vectorised_likelihood_is_the_sum_of_the_scalar_one():
    """The fit's likelihood and the online closed forms use one A0: P(alive) from either agrees."""
    from detectors.fitting import pareto_log_likelihood

    x, t_x, t = np.array([0.0, 2.0, 5.0]), np.array([0.0, 10.0, 30.0]), np.array([38.0, 38.0, 38.0])
    ll = pareto_log_likelihood(NOTE["r"], NOTE["alpha"], NOTE["s"], NOTE["beta"], x, t_x, t)
    # L = Gamma(r+x) alpha^r beta^s / Gamma(r) / ((alpha+T)^(r+x) (beta+T)^s) / P(alive)
    r, alpha, s, beta = NOTE.values()
    for i in range(3):
        alive_part = (math.lgamma(r + x[i]) - math.lgamma(r) + r * math.log(alpha) + s * math.log(beta)
                      - (r + x[i]) * math.log(alpha + t[i]) - s * math.log(beta + t[i]))
        assert ll[i] == pytest.approx(alive_part - math.log(p_alive(NOTE_PARAMS, int(x[i]), t_x[i], t[i])), rel=1e-9)
