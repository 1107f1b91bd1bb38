"""Ray Tune trials, MLflow tracking, resume and failures behind `ohem-tune run`.

Ray, MLflow and torch are imported inside functions: importing this package stays light.
"""

from ohem_tune.orchestration.driver import run_plan
from ohem_tune.orchestration.outcomes import RunSummary, TrialOutcome
from ohem_tune.orchestration.plan import Plan, make_plan

__all__ = ["Plan", "RunSummary", "TrialOutcome", "make_plan", "run_plan"]
