"""The one trainer for every genlab neural model.

* :class:`TrainingConfig` — resolved settings of a run
* :class:`Trainer` — ``Trainer(config).fit(network, data, resume=...)``: batches, schedule,
  EMA, validation + early stopping, checkpoints, resume, NaN guard, logging, DDP
* :class:`Callback`, :class:`SampleGridCallback` — hooks into the loop; callbacks see the
  trainer as a :class:`TrainerView`
* :mod:`.checkpoint` — the crash-safe checkpoint format (:func:`load_latest`)
* :func:`lr_factor`, :class:`EMA` — the schedule and the weight average on their own

See :mod:`genlab.training.trainer` for the network contract and its optional hooks
(``optimizer_groups``, ``grad_clip_per_optimizer``, ``ema_module``, ``initialize``,
``selection``/``selection_metric``) and for multi-phase training (``train_step``,
``draw_batch``, ``optimize``).
"""

from .callbacks import Callback, SampleGridCallback, StopAfterSteps
from .checkpoint import Checkpoint, CheckpointStore, load_latest
from .config import TrainingConfig, resolve_precision
from .data import epoch_batches, split_train_val
from .distributed import DistributedContext, is_main_process
from .ema import EMA
from .metrics import METRICS_FILE, MetricsLog, read_metrics
from .schedule import LRSchedule, lr_factor
from .state import SELECTIONS, TrainerView
from .trainer import Trainer, TrainingDiverged, TrainResult, TrainState, make_optimizer, unpack_output

__all__ = [
    "Callback",
    "SampleGridCallback",
    "StopAfterSteps",
    "Checkpoint",
    "CheckpointStore",
    "load_latest",
    "TrainingConfig",
    "resolve_precision",
    "epoch_batches",
    "split_train_val",
    "DistributedContext",
    "is_main_process",
    "EMA",
    "METRICS_FILE",
    "MetricsLog",
    "read_metrics",
    "LRSchedule",
    "lr_factor",
    "SELECTIONS",
    "TrainerView",
    "Trainer",
    "TrainingDiverged",
    "TrainResult",
    "TrainState",
    "make_optimizer",
    "unpack_output",
]
