"""Training heads on feature bags: a typed config, the training loop and checkpoint folders.

``train(config, train_bags, out_dir)`` writes a checkpoint folder (``head.pt`` +
``checkpoint.json`` + ``loss_log.csv``) that ``load_checkpoint`` and
``edgevad_export.evaluation.evaluate`` read back.
"""

from edgevad_export.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from edgevad_export.training.config import TrainConfig
from edgevad_export.training.trainer import train

__all__ = ["CheckpointError", "TrainConfig", "load_checkpoint", "save_checkpoint", "train"]
