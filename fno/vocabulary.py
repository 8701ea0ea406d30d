"""The study's words, spelled once: training modes, shifts, trial statuses."""

TRAINING_MODES = ("pretrain", "scratch", "finetune", "zeroshot")  # what one trial does
DOWNSTREAM_MODES = ("scratch", "finetune", "zeroshot")  # the ways a downstream point is trained
FITTED_MODES = ("scratch", "finetune")  # the modes with learning curves (zero-shot has no N)
RANDOM_INIT_MODES = ("pretrain", "scratch")  # the modes that start from a random initialisation
SHIFTS = ("none", "moderate", "large")  # downstream parameter range against pre-training, in order
STATUSES = ("ok", "diverged", "failed", "stopped")  # stopped: ended early by a scheduler (ASHA)
