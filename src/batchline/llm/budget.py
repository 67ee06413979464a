"""The budget: a call reserves its estimated cost before it is sent, and settles after.

The guarantee: a call is sent only if what was spent, plus what the calls in flight have
reserved, plus its own estimate stay within ``max_cost_usd``; a call that does not fit yet
waits for the calls in flight to settle. With ``max_tokens`` set the estimate bounds the
real cost, so spending never passes the budget. Without it, a call is also sent when it is
the only one and anything is left, so only a call in flight can pass the budget, and by
no more than its own cost.
"""

from __future__ import annotations

import asyncio
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

    def reserve(self, estimate: float, *, bounded: bool = False) -> float | None:
        """Hold ``estimate`` dollars for a call about to be sent: the amount held, or None
        when the call may fit once the calls in flight settle (wait and ask again).

        Args:
            estimate: the call's estimated cost.
            bounded: the estimate is an upper bound (``max_tokens`` set): never send a
                call that may not fit.

        Raises:
            BudgetExceededError: the budget cannot cover it, whatever the calls in flight
                turn out to cost.
        """
        with self._lock:
            limit = self.max_cost_usd
            if limit is None or self.spent + self.reserved + estimate <= limit:
                return self._hold(estimate)
            if not bounded and self.in_flight == 0 and self.spent < limit:
                return self._hold(estimate)  # alone: it may pass the budget by its own cost
            could_fit = self.spent + estimate <= limit or (not bounded and self.spent < limit)
            if self.in_flight > 0 and could_fit:
                return None
            raise BudgetExceededError(self._message(estimate), limit, self.spent)

    def _hold(self, estimate: float) -> float:
        self.reserved += estimate
        self.in_flight += 1
        return estimate

    async def areserve(self, estimate: float, *, bounded: bool = False) -> float:
        """``reserve``, waiting while the calls in flight may still leave room."""
        while True:
            held = self.reserve(estimate, bounded=bounded)
            if held is not None:
                return held
            await asyncio.sleep(0.01)

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
