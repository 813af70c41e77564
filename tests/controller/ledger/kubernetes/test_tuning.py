"""`Tuning`: today's values by default, and each relation between knobs refused by name when broken."""

from __future__ import annotations

import pytest

from quotalang.controller.ledger.kubernetes.tuning import Tuning


def test_the_defaults_are_todays_values() -> None:
    tuning = Tuning()
    assert (tuning.reservation_ttl, tuning.lease_window, tuning.lease_after, tuning.answer_wait) == (30, 10, 4, 2)
    assert (tuning.tidy_lag, tuning.fold_patience, tuning.controller_timeout) == (10, 5, 30)
    assert tuning.lease_sizes == (256, 128, 64, 32, 16, 8, 4, 2, 1)


def test_a_tuning_is_a_value() -> None:
    with pytest.raises(AttributeError):
        Tuning().lease_window = 1.0  # type: ignore[misc]
    assert Tuning(lease_window=3.0) == Tuning(lease_window=3.0) != Tuning()


@pytest.mark.parametrize(("knobs", "message"), [
    # 15 is not less than half of 30: a patient fold could outlive the admission it confirms.
    ({"fold_patience": 15.0}, r"fold_patience \(15.0\) must be less than half of reservation_ttl \(30.0\)"),
    # 14.9 is: the same TTL, a fold patience just inside it.
    ({"fold_patience": 14.9, "tidy_lag": 15.2},
     r"fold_patience \(14.9\) \+ tidy_lag \(15.2\) must be less than reservation_ttl \(30.0\)"),
    # 5 + 10 = 15 is fine at 30, not at a TTL of 12 (5 < 6 passes the first check).
    ({"reservation_ttl": 12.0}, r"fold_patience \(5.0\) \+ tidy_lag \(10.0\) must be less than reservation_ttl"),
    # The budget of a 10 s admission is 9.5 s: a 9.5 s wait leaves nothing to write with.
    ({"answer_wait": 9.5}, r"answer_wait \(9.5\) must be less than the budget of admission_timeout \(10.0\)"),
    ({"ask_poll": 2.0}, r"ask_poll \(2.0\) must be less than answer_wait \(2.0\)"),
    ({"controller_timeout": 5.0}, r"controller_timeout \(5.0\) must be at least admission_timeout \(10.0\)"),
    # A quarter of 9.5 s is 2.375 s.
    ({"retry_backoff": 2.5}, r"retry_backoff \(2.5\) must be less than a quarter of admission_timeout"),
    # 5 + 2 × 12.5 = 30: a fold retried after one hung call would land at the TTL, not before it.
    ({"call_timeout": 12.5}, r"fold_patience \(5.0\) \+ 2 × call_timeout \(12.5\) must be less than reservation_ttl"),
    ({"call_timeout": 9.5, "fold_patience": 1.0},
     r"call_timeout \(9.5\) must be less than the budget of admission_timeout \(10.0\)"),
    ({"lease_sizes": (4, 2)}, "ending at 1"),
    ({"lease_sizes": (2, 4, 1)}, "largest first"),
    ({"lease_sizes": (4, 4, 1)}, "distinct"),
    ({"lease_sizes": ()}, "lease_sizes"),
    ({"lease_after": 0}, r"lease_after must be positive, not 0"),
    ({"tidy_lag": -1.0}, r"tidy_lag must be positive"),
])
def test_a_broken_relation_is_refused_naming_its_knobs(knobs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Tuning(**knobs)  # type: ignore[arg-type]


def test_values_just_inside_every_relation_are_accepted() -> None:
    # 14.9 < 15; 14.9 + 15.0 < 30; 9.4 < 9.5; 0.1 < 9.4; 2.3 < 2.375; 10 >= 10.
    tuning = Tuning(fold_patience=14.9, tidy_lag=15.0, answer_wait=9.4, retry_backoff=2.3, controller_timeout=10.0,
                    lease_sizes=(3, 1))
    assert tuning.lease_sizes == (3, 1)
