"""Planning: battery dispatch over a horizon (linear program, HiGHS)."""

from ems.planning.lp import (
    Plan,
    PlanError,
    PlanInfeasible,
    PlanInputError,
    PlanProblem,
    PlanSolveError,
    cost_without_battery,
    plan_dispatch,
)

__all__ = [
    "Plan",
    "PlanError",
    "PlanInfeasible",
    "PlanInputError",
    "PlanProblem",
    "PlanSolveError",
    "cost_without_battery",
    "plan_dispatch",
]
