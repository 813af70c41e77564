"""Every knob of the replicated ledger in one value, checked against the others when it is built.

The numbers depend on each other (a fold may wait, but not past the time an
unconfirmed admission is held; a request may wait for answers, but not past
its deadline), so a `Tuning` that breaks one of those relations is refused
with a `ValueError` naming both knobs, instead of a store that over-admits or
stalls. Tests build their own (`Tuning(lease_window=3.0)`) rather than patch
module constants.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from quotalang.controller.kube.deadline import DEFAULT_TIMEOUT, budget
from quotalang.controller.ledger.base import DEFAULT_RESERVATION_TTL


@dataclass(frozen=True, slots=True)
class Tuning:
    """The replicated ledger's timings and sizes (seconds unless named otherwise); today's values by default."""

    # How long an admission is held (wall clock) when nothing confirms it: its replica's sum keeps it that long.
    reservation_ttl: float = DEFAULT_RESERVATION_TTL
    # The deadline of an ask that carries none (a tool, a test): the apiserver's default webhook timeout.
    admission_timeout: float = DEFAULT_TIMEOUT
    # A leader's write (fold, resync, expiry, cash) may wait longer than an admission: nobody waits on it.
    controller_timeout: float = 30.0
    # Seconds a replica admits within a lease it wrote, without writing again. Another replica that needs the
    # room asks for it back (`asking`) rather than waiting for the window to end, so the window can be long:
    # with three replicas over 50 groups each sees about one admission per group a second, and every
    # (replica, group) pair that writes every few seconds adds writes the apiserver pays for
    # (docs/architecture.md, Leases).
    lease_window: float = 10.0
    # A lease holds m more of the last admission, m the largest of these no larger than the recent admissions.
    lease_sizes: tuple[int, ...] = (256, 128, 64, 32, 16, 8, 4, 2, 1)
    # Admissions of a group in this replica's current lease window and the one before before a batch takes one.
    lease_after: int = 4
    # A lease of m leaves room for this many times m after it (4: never the last fifth of what is free).
    lease_headroom: int = 4
    # Seconds a request that only other replicas' entries keep out waits for their answers.
    answer_wait: float = 2.0
    # How often such a waiting request re-reads the ledger to see the answers.
    ask_poll: float = 0.1
    # Seconds a replica's sum, lowered by a fold, may wait to be written (unless asked).
    tidy_lag: float = 10.0
    # How long one `tidy` write of a replica's entry may take before it is left to the next round.
    tidy_timeout: float = 5.0
    # Seconds observations that free nothing may wait to share their group's next fold write. 5 s, not less:
    # at 50 busy groups a fold per group every 2 s was most of the leader's writes (25 a second).
    fold_patience: float = 5.0
    # The longest one API call may wait for its answer before it is given up and retried (a hung connection).
    call_timeout: float = 5.0
    # The longest back-off between two retries of a failed call (it is also at most a quarter of what is left).
    retry_backoff: float = 0.2
    # Bodies of admissions kept for lookups (`/scale` parents) before the expired ones are pruned.
    prune_after: int = 1024

    def __post_init__(self) -> None:
        for knob in fields(self):
            value = getattr(self, knob.name)
            if knob.name != "lease_sizes" and not value > 0:
                raise ValueError(f"{knob.name} must be positive, not {value!r}")
        sizes = self.lease_sizes
        # `_lease_for` takes the largest size no larger than the recent admissions, and a busy group has at
        # least `lease_after` >= 1 of them: the sizes must go down, and end at 1 so one is always found.
        if not sizes or any(not isinstance(m, int) or m < 1 for m in sizes) or list(sizes) != sorted(
                set(sizes), reverse=True) or sizes[-1] != 1:
            raise ValueError(f"lease_sizes must be distinct whole numbers, largest first, ending at 1: {sizes!r}")
        # An admission is held by its replica's sum until a fold confirms it, and only for the reservation TTL:
        # a fold that waits (`fold_patience`) must be written, watched and confirmed well before the TTL ends,
        # or the admission would be counted nowhere for a while (under-counting lets a request over quota in).
        self._below("fold_patience", "reservation_ttl", self.reservation_ttl / 2, "half of")
        # A sum lowered by a fold is written within `tidy_lag`; the fold itself may wait `fold_patience`. Both
        # must end before the admission's deadline, or the lag means nothing (its expiry writes first) and the
        # other replicas count folded usage twice for as long as a reservation lives.
        if self.fold_patience + self.tidy_lag >= self.reservation_ttl:
            raise ValueError(f"fold_patience ({self.fold_patience}) + tidy_lag ({self.tidy_lag}) must be less "
                             f"than reservation_ttl ({self.reservation_ttl})")
        # A request that waits for answers must still have time to read and write before its deadline
        # (`_decide_batch` waits at most half of what is left; a longer wait is a knob that lies).
        self._below("answer_wait", "admission_timeout", budget(self.admission_timeout), "the budget of")
        # The waiting request re-reads every `ask_poll`: a wait shorter than one poll never sees an answer.
        self._below("ask_poll", "answer_wait", self.answer_wait)
        # A leader's write must not give up before an admission would: nobody retries a fold for it.
        if self.controller_timeout < self.admission_timeout:
            raise ValueError(f"controller_timeout ({self.controller_timeout}) must be at least admission_timeout "
                             f"({self.admission_timeout})")
        # A fold that waited its patience may meet a hung call and must still land, on the retry, before the
        # admissions it confirms leave their replicas' sums at the TTL (a fold write that hung its whole
        # controller_timeout, 30 s, under-counted: the simulation's `--max-hang 30`, seed 1).
        if self.fold_patience + 2 * self.call_timeout >= self.reservation_ttl:
            raise ValueError(f"fold_patience ({self.fold_patience}) + 2 × call_timeout ({self.call_timeout}) must "
                             f"be less than reservation_ttl ({self.reservation_ttl})")
        # An admission must be able to retry a call that hung.
        self._below("call_timeout", "admission_timeout", budget(self.admission_timeout), "the budget of")
        # The retry back-off must leave room for a retry within an admission's deadline.
        self._below("retry_backoff", "admission_timeout", budget(self.admission_timeout) / 4, "a quarter of")

    def _below(self, knob: str, bound: str, limit: float, how: str = "") -> None:
        value, of = getattr(self, knob), getattr(self, bound)
        if not value < limit:
            said = f"{how} {bound} ({of})" if how else f"{bound} ({of})"
            raise ValueError(f"{knob} ({value}) must be less than {said}")


__all__ = ["Tuning"]
