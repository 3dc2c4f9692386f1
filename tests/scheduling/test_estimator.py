import numpy as np
import pytest

from jitagent.scheduling.estimator import OutputLengthEstimator


def test_prior_is_used_before_any_sample_and_grows_with_q():
    est = OutputLengthEstimator(prior_median=200, prior_sigma=1.0)
    assert est.quantile("new", 0.5) == pytest.approx(200, rel=1e-6)
    assert est.quantile("new", 0.95) > 4 * est.quantile("new", 0.5)


def test_learned_quantiles_follow_the_class_distribution():
    est = OutputLengthEstimator(min_samples=20)
    rng = np.random.default_rng(0)
    for length in rng.integers(1, 1001, size=2000):
        est.observe("uniform", int(length))
    assert est.quantile("uniform", 0.5) == pytest.approx(500, rel=0.08)
    assert est.quantile("uniform", 0.95) == pytest.approx(950, rel=0.05)


def test_survival_conditioning_tightens_the_remaining_work_as_tokens_arrive():
    est = OutputLengthEstimator(min_samples=20)
    for length in [10] * 80 + [1000] * 20:  # mostly short, a long tail
        est.observe("bimodal", length)
    # At the start the conservative q=0.9 must allow for the tail...
    assert est.remaining("bimodal", 0.9, generated=0) == 1000
    # ...the median says short, until the request outlives the short mode.
    assert est.remaining("bimodal", 0.5, generated=0) == 10
    assert est.quantile("bimodal", 0.5, generated=11) == 1000
    # Remaining work shrinks token by token once the estimate is settled.
    remaining = [est.remaining("bimodal", 0.9, generated=g) for g in (100, 500, 900)]
    assert remaining == [900, 500, 100]


def test_estimates_respect_max_tokens_and_stay_ahead_of_generation():
    est = OutputLengthEstimator()
    assert est.quantile("x", 0.99, max_tokens=64) == 64
    assert est.quantile("x", 0.5, generated=5000) > 5000


def test_a_sparse_class_borrows_the_pooled_samples():
    est = OutputLengthEstimator(min_samples=10)
    for _ in range(50):
        est.observe("busy", 30)
    est.observe("rare", 999)
    assert est.quantile("rare", 0.5) == 30


def test_window_forgets_old_lengths():
    est = OutputLengthEstimator(min_samples=5, window=10)
    for _ in range(10):
        est.observe("drift", 100)
    for _ in range(10):
        est.observe("drift", 7)
    assert est.quantile("drift", 0.99) == 7


def test_bad_arguments():
    with pytest.raises(ValueError):
        OutputLengthEstimator(prior_median=0)


def test_conditional_mean_follows_the_survivors():
    est = OutputLengthEstimator(min_samples=10)
    for length in [10] * 50 + [100] * 50:
        est.observe("c", length)
    assert est.mean("c") == pytest.approx(55)
    assert est.mean("c", generated=20) == pytest.approx(100)
    est.observe("c", 100)  # a new sample invalidates the cached sums
    assert est.mean("c") == pytest.approx((500 + 5100) / 101)


def test_unique_classes_are_bounded_and_the_common_classes_keep_their_estimates():
    """Every caller-chosen class keeps a window of samples: 100k unique ones must not keep 100k windows,
    and the classes in steady use must estimate exactly as if the unique ones had never come."""
    import tracemalloc

    est = OutputLengthEstimator(max_classes=256, window=100)   # windows full well before 10k
    reference = OutputLengthEstimator(max_classes=256, window=100)
    rng = np.random.default_rng(0)
    tracemalloc.start()
    try:
        for i in range(100_000):
            est.observe(f"unique-{i}", int(rng.integers(1, 500)))
            if i % 50 == 0:  # the common classes keep being used
                for common, scale in (("chat", 300), ("tool", 80)):
                    length = int(rng.integers(1, scale))
                    est.observe(common, length)
                    reference.observe(common, length)
            if i == 10_000:
                at_10k = tracemalloc.get_traced_memory()[0]
        at_100k = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert est.num_classes == 256
    assert at_100k - at_10k < 20_000  # flat: windows of one sample come and go
    for common in ("chat", "tool"):
        for q, generated in ((0.5, 0), (0.99, 0), (0.9, 40)):
            assert est.quantile(common, q, generated) == reference.quantile(common, q, generated)
    assert est.quantile("unique-5", 0.5) == est.quantile("never-seen", 0.5)  # evicted: the pooled samples


def test_max_classes_must_be_positive():
    with pytest.raises(ValueError, match="max_classes"):
        OutputLengthEstimator(max_classes=0)


def test_lookups_follow_new_observations():
    """Estimates are remembered between observations, never across one."""
    est = OutputLengthEstimator(min_samples=3)
    for _ in range(3):
        est.observe("c", 10)
    assert est.quantile("c", 0.5) == 10
    for _ in range(4):
        est.observe("c", 30)
    assert est.quantile("c", 0.5) == 30
