"""The study's words, spelled once: training modes, shifts, trial statuses."""

TRAINING_MODES = ("pretrain", "scratch", "finetune", "zeroshot")  # what one trial does
DOWNSTREAM_MODES = ("scratch", "finetune", "zeroshot")  # the ways a downstream point is trained
FITTED_MODES = ("scratch", "finetune")  # the modes with learning curves (zero-shot has no N)
RANDOM_INIT_MODES = ("pretrain", "scratch")  # the modes that start from a random initialisation
PRETRAINED_MODES = ("finetune", "zeroshot")  # the modes that start from a pre-training checkpoint
# Which weights a fine-tune trains: full (all, the paper's), head (the projection only),
# lift-head (lift and projection; Fourier layers frozen), frozen-spectral (all but the
# spectral weights).
FINETUNE_STRATEGIES = ("full", "head", "lift-head", "frozen-spectral")
SHIFTS = ("none", "moderate", "large")  # downstream parameter range against pre-training, in order
STATUSES = ("ok", "diverged", "failed", "stopped")  # stopped: ended early by a scheduler (ASHA)
