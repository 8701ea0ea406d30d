"""The command-line overrides of a sweep that runs in seconds, shared by the sweep and search tests."""

# A sweep that runs in seconds: one tiny size, two shifts, N = 8.
TINY = [
    "--set",
    "resolution=16",
    "--set",
    'sizes=["w8-m4"]',
    "--set",
    'shifts=["none","moderate"]',
    "--set",
    "n_train=[8]",
    "--set",
    "lrs=[1e-3]",
    "--set",
    "pretrain.n_train=32",
    "--set",
    "pretrain.steps=20",
    "--set",
    "pretrain.eval_every=10",
    "--set",
    "downstream.steps=10",
    "--set",
    "downstream.eval_every=5",
    "--set",
    "n_val=8",
    "--set",
    "n_test=8",
]
TINY_TRIALS = 7  # 1 pretrain + 2 shifts x (scratch, finetune, zeroshot)
