"""Ray Tune trials, MLflow tracking, resume and failures behind `ohem-tune run`.

Ray, MLflow and torch are imported inside functions: importing this package stays light.
"""

from ohem_tune.orchestration.driver import Plan, RunSummary, TrialOutcome, make_plan, run_plan

__all__ = ["Plan", "RunSummary", "TrialOutcome", "make_plan", "run_plan"]
