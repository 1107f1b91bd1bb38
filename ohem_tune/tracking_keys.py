"""Names shared by the trainer, the MLflow layer and the report (pure constants, no imports).

Metric keys use '/' groups: train/* every log period, eval/* at each evaluation, final/* once.
"""

# train/* (logged every train.log_period iterations, averaged over the period)
LOSS = "train/loss"
LOSS_CLS = "train/loss_cls"
LOSS_BBOX = "train/loss_bbox"
LOSS_PER_ROI_ALL = "train/loss_per_roi_all"  # the paper's "mean loss per RoI" over ALL RoIs
LR = "train/lr"
SEC_PER_ITER = "train/sec_per_iter"
DATA_TIME = "train/data_time"
COMPUTE_TIME = "train/compute_time"
PEAK_MEM_GB = "train/peak_mem_gb"  # training peak (GiB), = PEAK_MEM_ALLOCATED (older runs: only)
# Training peaks so far, evaluations excluded. CUDA: torch's max allocated / max reserved (the
# caching allocator's share, what packing trials on a GPU needs); CPU: allocated is the peak RSS
# and reserved is not logged (no caching allocator).
PEAK_MEM_ALLOCATED = "train/peak_mem_allocated_gb"
PEAK_MEM_RESERVED = "train/peak_mem_reserved_gb"
# Seconds per iteration in each phase, averaged over the log period (CUDA: from CUDA events).
# data: loading + host-to-device copy; forward: trunk, matching, sampling, trainable head, losses;
# ranking: the read-only RoI-head pass of samplers that rank by loss (0 for the heuristic);
# backward: backward pass + optimizer step.
PHASE_PREFIX = "train/phase/"
PHASE_DATA = "train/phase/data_s"
PHASE_FORWARD = "train/phase/forward_s"
PHASE_RANKING = "train/phase/ranking_s"
PHASE_BACKWARD = "train/phase/backward_s"
FG_FRACTION = "train/fg_fraction"
SELECTED_LOSS = "train/selected_loss_mean"  # mean ranking loss of the selected RoIs
ALL_LOSS = "train/all_loss_mean"  # mean ranking loss of all RoIs (samplers that score all)
NUM_SELECTED = "train/num_selected"
# Every sampler.agreement_period iterations (approximate ranking passes): the exact pass re-run
# on the same minibatch with the same dropout masks; Jaccard overlap of the two selected sets,
# and mean exact ranking loss of the approximate selection / that of the exact selection.
RANKING_JACCARD = "train/ranking_jaccard"
RANKING_LOSS_RATIO = "train/ranking_loss_ratio"

# eval/* (each evaluation)
MAP = "eval/mAP"  # VOC07 11-point (or COCO AP when test.metric == coco)
MAP_AREA = "eval/mAP_area"  # VOC2010+ all-points AP
AP_PREFIX = "eval/AP/"  # + class name
COCO_PREFIX = "eval/coco/"  # + AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl
# eval/* keys measure the test split. With train.eval_split: val (searches) the same metrics on
# dataset.val_split carry "val/" after their group: eval/val/mAP, eval/val/AP/<class>, and
# final/val/mAP once; final/mAP stays the test split's.
VAL_GROUP = "val/"
VAL_MAP = "eval/val/mAP"
# The training seconds so far (iterations only: evaluations and checkpoints excluded, resumed
# sessions included), once per evaluation point whatever its splits: mAP vs training time.
EVAL_TRAIN_SECONDS = "eval/train_seconds"

# final/* (once per run)
FINAL_MAP = "final/mAP"
FINAL_MAP_AREA = "final/mAP_area"
FINAL_AP_PREFIX = "final/AP/"
FINAL_COCO_PREFIX = "final/coco/"
FINAL_VAL_MAP = "final/val/mAP"
FINAL_SEC_PER_ITER = "final/sec_per_iter"
FINAL_PEAK_MEM_GB = "final/peak_mem_gb"  # the training peak, read before the final evaluation
FINAL_PEAK_MEM_ALLOCATED = "final/peak_mem_allocated_gb"
FINAL_PEAK_MEM_RESERVED = "final/peak_mem_reserved_gb"  # CUDA only
FINAL_PHASE_PREFIX = "final/phase/"  # the train/phase/* means over the run's iterations
FINAL_PHASE_DATA = "final/phase/data_s"
FINAL_PHASE_FORWARD = "final/phase/forward_s"
FINAL_PHASE_RANKING = "final/phase/ranking_s"
FINAL_PHASE_BACKWARD = "final/phase/backward_s"
FINAL_TRAIN_SECONDS = "final/train_seconds"
FINAL_LOSS_PER_ROI_ALL = "final/loss_per_roi_all"

# MLflow tags on each trial run
TAG_ROLE = "ohem_tune.role"  # "trial" or "parent"
TAG_SPEC = "ohem_tune.spec"
TAG_SPEC_HASH = "ohem_tune.spec_hash"
TAG_VARIANT = "ohem_tune.variant"
TAG_SEED = "ohem_tune.seed"
TAG_PROFILE = "ohem_tune.profile"
TAG_TRIAL_ID = "ohem_tune.trial_id"  # config hash + seed
TAG_CONFIG_HASH = "ohem_tune.config_hash"
TAG_BASELINE = "ohem_tune.baseline"  # "true" on the spec's baseline variant
TAG_PAPER_MAP = "ohem_tune.paper_map"  # the paper's reported number for this row, if any
TAG_MODEL_LABEL = "ohem_tune.model_label"  # the paper's trunk name for the row (VGGM, VGG16)
TAG_STATUS = "ohem_tune.status"  # FINISHED | FAILED | PRUNED
TAG_ERROR = "ohem_tune.error"
TAG_DEVICE = "ohem_tune.device"  # e.g. "cpu" or "NVIDIA H100 80GB HBM3"
TAG_CPU = "ohem_tune.cpu"  # engine.machine.cpu_model(): CPU model and the ISA torch uses
TAG_TORCH_BUILD = "ohem_tune.torch_build"  # engine.machine.torch_build()
TAG_GIT_SHA = "ohem_tune.git_sha"
TAG_VERSION = "ohem_tune.version"
TAG_HOST = "ohem_tune.host"
TAG_INVOCATION = "ohem_tune.invocation"  # the parent run's id-independent invocation name
TAG_LABEL = "ohem_tune.label"  # the row's "Experiment" label in the paper's table (e.g. "OHEM")
TAG_VARIANT_ORDER = "ohem_tune.variant_order"  # the variant's position in the spec (0-based)
TAG_SEARCH_POINT = "ohem_tune.search_point"  # JSON of the Optuna-sampled values of a search trial
TAG_TEST_PROTOCOL = "ohem_tune.test_protocol"  # evaluation.protocol.test_protocol(cfg)
TAG_GPU_MEMORY_CAP = "ohem_tune.gpu_memory_cap"  # CUDA memory fraction of a trial, or "none"
