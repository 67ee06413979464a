"""The budget: a call reserves its estimated cost before it is sent, and settles after.

The guarantee: a call is sent only if what was spent, plus what the calls in flight have
reserved, plus its own estimate stay within ``max_cost_usd`` (or, when no call is in flight,
while anything is left). So only the calls in flight can take spending past the budget,
and never by more than their own cost: by nothing when the estimates are not below the
real costs (``max_tokens`` set bounds the answer), by at most one call's cost otherwise.
"""

from __future__ import annotations

import threading

from batchline.llm.errors import BudgetExceededError
from batchline.observe.meters import format_usd


class Budget:
    """``max_cost_usd`` for one model (or one workflow step), shared by its calls.

    Args:
        max_cost_usd: the most to spend; None: no limit (still counted).
    """

    def __init__(self, max_cost_usd: float | None) -> None:
        self.max_cost_usd = max_cost_usd
        self.spent = 0.0
        self.reserved = 0.0
        self.in_flight = 0
        self._lock = threading.Lock()

    def reserve(self, estimate: float) -> float:
        """Hold ``estimate`` dollars for a call about to be sent (returns the amount held).

        Raises:
            BudgetExceededError: the budget cannot cover it.
        """
        with self._lock:
            limit = self.max_cost_usd
            fits = self.spent + self.reserved + estimate <= limit if limit is not None else True
            alone = self.in_flight == 0 and limit is not None and self.spent < limit
            if not (fits or alone):
                raise BudgetExceededError(self._message(estimate), limit or 0.0, self.spent)
            self.reserved += estimate
            self.in_flight += 1
            return estimate

    def settle(self, held: float, actual: float) -> None:
        """The call came back: release what it held, count what it cost."""
        with self._lock:
            self.reserved = max(0.0, self.reserved - held)
            self.in_flight -= 1
            self.spent += actual

    def cancel(self, held: float) -> None:
        """The call failed without a charge: release what it held."""
        self.settle(held, 0.0)

    def exhausted(self) -> bool:
        """Nothing more fits."""
        with self._lock:
            return self.max_cost_usd is not None and self.spent >= self.max_cost_usd

    def _message(self, estimate: float) -> str:
        assert self.max_cost_usd is not None
        return (
            f"the budget `max_cost_usd` of {format_usd(self.max_cost_usd)} is reached: "
            f"{format_usd(self.spent)} spent, {format_usd(self.reserved)} held by "
            f"{self.in_flight} call(s) in flight, and the next call would need about "
            f"{format_usd(estimate)}. Raise `max_cost_usd` and resume to go on."
        )


__all__ = ["Budget", "format_usd"]
