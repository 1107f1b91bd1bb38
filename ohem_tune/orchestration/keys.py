"""Keys of the results trials report to Ray Tune (besides the trainer's metrics) and of the
orchestration's own MLflow tags. Constants only: the driver imports them without torch."""

ITERATION = "iteration"
STATUS = "ohem_tune/status"
TRIAL_ID = "ohem_tune/trial_id"
TRIAL_SECONDS = "ohem_tune/trial_seconds"
TRIAL_START = "ohem_tune/trial_start_unix"
TRIAL_CPU_SECONDS = "ohem_tune/trial_cpu_seconds"  # CPU time of the trial's process (all threads)
FIRST_ITER = "ohem_tune/first_iter_unix"
RUN_ID = "ohem_tune/mlflow_run_id"
TAG_RAY_NODE = "ohem_tune.ray_node"  # the Ray node id the trial (last) ran on
