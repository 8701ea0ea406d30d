"""Presets -> the deterministic list of planned trials of a sweep, each with a stable key.

Stage 1 pre-trains one model per (size, pre-training set), planned only when some
downstream mode starts from a checkpoint (fno.vocabulary.PRETRAINED_MODES: finetune,
zeroshot); a scratch-only preset has no stage 1. Stage 2 runs the downstream
grid: size x pre-training set x family x shift x N x mode x lr x seed. Trials whose
result cannot depend on a field do not repeat over it: scratch does not depend on
the pre-training set; zero-shot depends on neither N, lr nor seed. Keys dedupe them.

A key is a SHA-256 of the fields that define the experiment (the TrialConfig without
its execution fields, with the pre-trained checkpoint named by its trial's key), so
it is the same on every machine and for every storage location.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fno.checks import check_subset, sha256_hex
from fno.config import check_known_fields, load_toml
from fno.data.external import ExternalDataset, Plan
from fno.data.external import check as check_dataset
from fno.model import PRESETS as SIZE_PRESETS
from fno.physics.families import CHANNELS, SHIFT_RANGE, SINGLE_FAMILIES
from fno.train import TrialConfig
from fno.vocabulary import DOWNSTREAM_MODES, FINETUNE_STRATEGIES, PRETRAINED_MODES, SHIFTS

PRESET_DIR = Path(__file__).parent / "presets"
# TrialConfig fields that are not part of a key: how a trial runs, and what else its
# trained model is tested on (extra test resolutions add evaluations, not a new trial).
NON_KEY_FIELDS = ("device", "threads", "bf16", "tf32", "gpu_share", "pretrained", "eval_resolutions")
# Fields added after the first sweeps ran, with the value that leaves them out of a key:
# a trial that does not use one keeps the key (and results) it had.
OPTIONAL_KEY_FIELDS = {
    "epochs": None,
    "min_steps": None,
    "max_steps": None,
    "finetune_strategy": "full",
    "dataset": None,
    "padding": 0.0,
    "coords": False,
}
# The grid's axes that must be non-empty lists (a study grows along these and the others in
# fno_sweeps.manifest.GRID_AXES).
LIST_AXES = ("sizes", "pretrain_families", "families", "shifts", "n_train", "train_modes", "lrs", "seeds", "data_seeds")
SIZE_PATTERN = re.compile(r"^w(\d+)-m(\d+)$")


def parse_size(name: str) -> tuple[int, int]:
    """'w32-m8' -> (32, 8): any width and modes, not only the named presets."""
    if name in SIZE_PRESETS:
        return SIZE_PRESETS[name]
    match = SIZE_PATTERN.match(name)
    if not match or min(int(match[1]), int(match[2])) < 1:
        raise ValueError(f"sizes: {name!r} is not a size; use wWIDTH-mMODES, e.g. {', '.join(SIZE_PRESETS)}")
    return int(match[1]), int(match[2])


@dataclass(frozen=True)
class StageSettings:
    """Training settings of one stage (see TrialConfig for each field's meaning)."""

    n_train: int = 512  # pre-training set size (stage 1 only; stage 2 uses the grid's N)
    # The budget, exactly one of steps (fixed) and epochs (the paper's rule: the budget
    # grows with N; see fno.train.budget_steps), epochs optionally clipped by min/max_steps.
    steps: int | None = 500
    epochs: float | None = None
    min_steps: int | None = None
    max_steps: int | None = None
    batch_size: int = 32
    eval_every: int = 100
    lr: float = 1e-3  # stage 1 only; stage 2 uses the grid's learning rates
    weight_decay: float = 0.0  # Adam's L2 penalty (sweeps/hpo.py searches it)


@dataclass(frozen=True)
class AdaptiveSettings:
    """The ``[adaptive]`` section: rounds of added trials after the planned grid
    (sweeps/adaptive.py; docs/analysis.md, "Adaptive rounds"). Not part of a study's
    definition: added trials are ordinary keyed trials."""

    enabled: bool = False  # --adaptive turns it on for one run
    max_rounds: int = 3  # rounds of additions after the planned grid
    max_trial_hours: float = 1.0  # estimated trial-hours of all added trials together
    max_n: int | None = None  # largest N scratch may be extended to (unset: 8 x the grid's largest N)
    min_n: int = 1  # smallest N fine-tuning may be extended to
    max_lr_steps: int = 2  # rates beyond the grid's smallest and largest, each side, per point
    max_data_seeds: int = 4  # data seeds per curve at most (the grid's included)
    # A point run at one rate has no spacing to step by: the rule adds the rates this factor
    # either side of it (half a decade), at the curve's end that sets its gain (scratch's
    # largest N, fine-tuning's smallest), where a better rate moves the verdict. 1: never.
    one_rate_step: float = 10**0.5

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"adaptive.enabled must be true or false, got {self.enabled!r}")
        for name, least in (("max_rounds", 1), ("min_n", 1), ("max_lr_steps", 0), ("max_data_seeds", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"adaptive.{name} must be a whole number >= {least}, got {value!r}")
        if self.max_n is not None and (isinstance(self.max_n, bool) or not isinstance(self.max_n, int)
                                       or self.max_n < 1):  # fmt: skip
            raise ValueError(f"adaptive.max_n must be a whole number >= 1 or unset, got {self.max_n!r}")
        step = self.one_rate_step
        if isinstance(step, bool) or not isinstance(step, int | float) or not 1 <= step < float("inf"):
            raise ValueError(f"adaptive.one_rate_step must be a factor >= 1 (1: off), got {step!r}")
        hours = self.max_trial_hours
        if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours < float("inf"):
            raise ValueError(f"adaptive.max_trial_hours must be a number of hours > 0, got {hours!r}")

    def largest_n(self, n_train: tuple[int, ...]) -> int:
        """The cap on scratch's N: max_n, or 8 x the grid's largest N."""
        return self.max_n if self.max_n is not None else 8 * max(n_train)


@dataclass(frozen=True)
class Preset:
    """A named sweep grid, loaded from TOML (sweeps/presets/*.toml), validated fully."""

    name: str
    resolution: int = 64
    sizes: tuple[str, ...] = ("w16-m4",)
    pretrain_families: tuple[str, ...] = ("poisson",)  # single families and/or "mixture"
    families: tuple[str, ...] = ("poisson",)  # downstream families
    shifts: tuple[str, ...] = ("none", "moderate")
    n_train: tuple[int, ...] = (16, 64, 256)  # downstream N
    train_modes: tuple[str, ...] = DOWNSTREAM_MODES  # how each downstream point is trained
    # Which weights each fine-tune trains (fno.vocabulary.FINETUNE_STRATEGIES); every
    # fine-tune point is run once per strategy. "full" is the paper's.
    finetune_strategies: tuple[str, ...] = ("full",)
    lrs: tuple[float, ...] = (1e-3,)
    seeds: tuple[int, ...] = (0,)
    n_val: int = 64
    n_test: int = 64
    # Grids (points per axis) every trained and zero-shot model is also tested on, on the
    # same test samples (fno.results evaluations table). The training resolution is
    # always tested. Not part of a key: trials that already have a row keep their
    # evaluations when this changes.
    eval_resolutions: tuple[int, ...] = ()
    # Each data seed draws its own training, validation and test sets: a whole learning
    # curve per seed, which the bootstrap resamples (noise shared along N stays in its
    # intervals). Pre-training uses the first.
    data_seeds: tuple[int, ...] = (0,)
    ranges: Mapping[str, Mapping[str, tuple[float, float]]] = field(default_factory=dict)  # overrides SHIFT_RANGE
    # Run each scratch curve's largest-N trials (every lr, the first seed) again at twice
    # the budget (stage "probe"): the report's direct test that the floor is not the budget's.
    budget_probe: bool = False
    pretrain: StageSettings = StageSettings()
    downstream: StageSettings = StageSettings(steps=300, batch_size=16, eval_every=50)
    # Datasets of the user's ([datasets.NAME] tables, fno.data.external.ExternalDataset):
    # each NAME may go in families and pretrain_families. Checked (and digested) when the
    # preset is loaded, before anything runs.
    datasets: Mapping[str, Any] = field(default_factory=dict)
    # The model's domain padding (fraction of each axis) and coordinate channels, for the
    # trials that build a model (pretrain, scratch). Unset: fno.data.external's defaults
    # for a dataset, none for the periodic built-in families. Part of a key only when used.
    padding: float | None = None
    coords: bool | None = None
    # Rounds of trials added after the grid where the verdicts are not decided (sweeps/adaptive.py).
    adaptive: AdaptiveSettings = AdaptiveSettings()

    def __post_init__(self) -> None:
        for name in LIST_AXES:
            value = getattr(self, name)
            if isinstance(value, str) or not hasattr(value, "__iter__") or len(value) == 0:
                raise ValueError(f"{name} must be a non-empty list, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if isinstance(self.eval_resolutions, list):
            object.__setattr__(self, "eval_resolutions", tuple(self.eval_resolutions))
        for size in self.sizes:
            parse_size(size)
        self._check_datasets()
        names = tuple(self.datasets)
        hint = " (or a dataset of your own, declared as [datasets.NAME]: docs/data.md)"
        for axis, allowed in (("pretrain_families", (*SINGLE_FAMILIES, "mixture", *names)),
                              ("families", (*SINGLE_FAMILIES, *names))):  # fmt: skip
            try:
                check_subset(getattr(self, axis), axis, allowed)
            except ValueError as err:
                raise ValueError(f"{err}{hint}") from None
        check_subset(self.shifts, "shifts", SHIFTS)
        check_subset(self.train_modes, "train_modes", DOWNSTREAM_MODES)
        check_subset(self.finetune_strategies, "finetune_strategies", FINETUNE_STRATEGIES)
        if isinstance(self.adaptive, Mapping):
            check_known_fields(AdaptiveSettings, self.adaptive, "[adaptive]")
            object.__setattr__(self, "adaptive", AdaptiveSettings(**self.adaptive))
        if not isinstance(self.adaptive, AdaptiveSettings):
            raise ValueError(f"adaptive must be a table [adaptive], got {self.adaptive!r}")
        if not isinstance(self.budget_probe, bool):
            raise ValueError(f"budget_probe must be true or false, got {self.budget_probe!r}")
        for family, shifts in self.ranges.items():
            check_subset((family,), "ranges", SINGLE_FAMILIES)
            check_subset(tuple(shifts), f"ranges.{family}", SHIFTS)
        # Build every trial once: each TrialConfig validates its own fields, so a bad
        # value fails here, naming the field, before anything runs; expand() returns these.
        _check_stages(self)  # the stages' and axes' values, each named by its preset field
        object.__setattr__(self, "_trials", tuple(_expand(self)))

    def _check_datasets(self) -> None:
        """Validate the [datasets.NAME] tables, and check (open, digest, count) each dataset
        the grid uses against it: a bad one fails here, before Ray starts."""
        if not isinstance(self.datasets, Mapping):
            raise ValueError(f"datasets must be tables [datasets.NAME], got {self.datasets!r}")
        modes = tuple(sorted({parse_size(size)[1] for size in self.sizes}))
        checked = {}
        for name, table in self.datasets.items():
            ds = table if isinstance(table, ExternalDataset) else ExternalDataset.from_dict(name, table)
            if name in self.families:
                shifts = tuple(s for s in self.shifts if s in ds.shift_names)
                if not shifts:
                    raise ValueError(f"dataset {name} has shifts {list(ds.shift_names)}, none of the preset's shifts "
                                     f"{list(self.shifts)}; fix shifts or [datasets.{name}.shifts]")  # fmt: skip
                ds = check_dataset(ds, Plan(max(self.n_train), self.n_val, self.n_test, shifts, modes, self.data_seeds))
            if name in self.pretrain_families:
                pretrain_shift = "none" if "none" in ds.shift_names else None
                pretrain = Plan(self.pretrain.n_train, self.n_val, self.n_test, (pretrain_shift,), modes)
                ds = check_dataset(ds, dataclasses.replace(pretrain, data_seeds=self.data_seeds[:1]))
            checked[name] = ds
        object.__setattr__(self, "datasets", checked)

    def shift_range(self, family: str, shift: str) -> tuple[float, float] | None:
        """The parameter range of a family's shift (a dataset's: its param range, None for every sample)."""
        if family in self.datasets:
            return self.datasets[family].shift_range(shift)
        return tuple(self.ranges.get(family, {}).get(shift, SHIFT_RANGE[family][shift]))

    def layout(self, family: str) -> tuple[int, int]:
        """(input, output) channel counts of a family's or dataset's data as a model reads it."""
        if family in self.datasets:
            return self.datasets[family].in_channels, self.datasets[family].out_channels
        return len(CHANNELS[family]), 1

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preset:
        if "modes" in data:  # the old name, which read like Fourier modes
            raise ValueError("preset field 'modes' is now 'train_modes' (scratch, finetune, zeroshot); rename it")
        check_known_fields(cls, data, "preset")
        data = dict(data)
        for stage in ("pretrain", "downstream"):
            if stage in data:
                sub = data[stage]
                check_known_fields(StageSettings, sub, f"[{stage}]")
                sub = {**_budget_replaced(sub, set(sub)), **sub}  # an epoch budget replaces the default steps
                data[stage] = dataclasses.replace(cls.__dataclass_fields__[stage].default, **sub)
        return cls(**data)

    @classmethod
    def load(cls, name_or_path: str, overrides: Mapping[str, Any] | None = None) -> Preset:
        """A preset by name (sweeps/presets/NAME.toml) or path, with dotted overrides applied."""
        path = Path(name_or_path)
        if not path.suffix:
            path = PRESET_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            names = sorted(p.stem for p in PRESET_DIR.glob("*.toml"))
            raise ValueError(f"preset {name_or_path!r} not found; named presets: {', '.join(names)}")
        data = load_toml(path)
        data.setdefault("name", path.stem)
        overrides = dict(overrides or {})
        for key, value in overrides.items():
            target = data
            *parents, leaf = key.split(".")
            for parent in parents:
                target = target.setdefault(parent, {})
            given = {k.rpartition(".")[2] for k in overrides if k.rpartition(".")[0] == ".".join(parents)}
            for other in _budget_replaced({leaf: value}, given):  # an override's budget replaces the preset's
                target.pop(other, None)
            target[leaf] = value
        return cls.from_dict(data)


# The grid's axes whose values become one TrialConfig field: (axis, field).
VALUE_AXES = (("n_train", "n_train"), ("lrs", "lr"), ("seeds", "seed"), ("data_seeds", "data_seed"))


def _check_stages(preset: Preset) -> None:
    """Each stage's settings and each value of the axes that set a trial field, checked by
    TrialConfig's own rules, the error naming the preset field it came from
    (``downstream.epochs must be a finite number > 0, got -5``; ``lrs: lr must be > 0``)."""
    for stage in ("pretrain", "downstream"):
        settings = getattr(preset, stage)
        fields = {k: getattr(settings, k) for k in ("batch_size", "eval_every", "weight_decay", *_budget(settings))}
        if stage == "pretrain":  # stage 2 takes N and the learning rate from the grid
            fields.update(n_train=settings.n_train, lr=settings.lr)
        _check_named(stage, fields, lambda message, stage=stage: _stage_message(stage, message))
    for axis, name in VALUE_AXES:
        for value in getattr(preset, axis):
            _check_named(axis, {name: value}, lambda message, axis=axis: _axis_message(axis, message))


def _check_named(label: str, fields: dict[str, Any], rename) -> None:
    """Build a scratch TrialConfig of ``fields`` (others at valid defaults); its error, renamed."""
    try:
        TrialConfig(mode="scratch", resolution=32, width=8, modes=4, **fields)
    except ValueError as err:
        raise ValueError(rename(str(err))) from None


def _stage_message(stage: str, message: str) -> str:
    """``epochs must ...`` as ``downstream.epochs must ...``; other messages prefixed ``downstream: ``."""
    field = re.match(r"\w+", message)
    if field and field[0] in {f.name for f in dataclasses.fields(StageSettings)}:
        return f"{stage}.{message}"
    return f"{stage}: {message}"


def _axis_message(axis: str, message: str) -> str:
    """A message about an axis value, naming the axis (``lrs: lr must be > 0, got -1.0``)."""
    return message if message.startswith(f"{axis} ") else f"{axis}: {message}"


# A stage's budget is steps or epochs: overriding one drops the preset's other (and the
# step bounds that only an epoch budget takes), unless the override names them too.
BUDGET_FIELDS = {"steps": ("epochs", "min_steps", "max_steps"), "epochs": ("steps",)}


def _budget_replaced(given: Mapping[str, Any], named: set[str]) -> dict[str, None]:
    """The budget fields that the budget fields in ``given`` replace, except those ``named`` too."""
    return {
        other: None for leaf in given if leaf in BUDGET_FIELDS for other in BUDGET_FIELDS[leaf] if other not in named
    }


@dataclass(frozen=True)
class PlannedTrial:
    """One trial of a sweep: its key, stage, config and where its pre-trained model comes from."""

    key: str
    stage: str  # pretrain | downstream
    shift: str  # pretrain for stage 1
    config: TrialConfig
    pretrained_key: str = ""
    pretrain_family: str = ""

    @property
    def name(self) -> str:
        """A readable trial name for the dashboard and logs."""
        c = self.config
        if self.stage == "pretrain":
            return f"pretrain-{c.family}-w{c.width}m{c.modes}-{self.key[:6]}"
        data = f"-d{c.data_seed}" if c.data_seed else ""
        if c.mode == "zeroshot":  # no training: no N, learning rate or seed (the grid does not repeat over them)
            return f"zeroshot-{c.family}-{self.shift}-w{c.width}m{c.modes}{data}-{self.key[:6]}"
        mode = c.mode if c.finetune_strategy == "full" else f"{c.mode}[{c.finetune_strategy}]"
        stage = {"probe": "probe-", "hpo": "hpo-"}.get(self.stage, "")  # a budget probe, a search's trial
        return (f"{stage}{mode}-{c.family}-{self.shift}-w{c.width}m{c.modes}-N{c.n_train}-lr{c.lr:g}-s{c.seed}{data}-"
                f"{self.key[:6]}")  # fmt: skip


def trial_key(config: TrialConfig, pretrained_key: str = "") -> str:
    fields = {k: v for k, v in config.to_dict().items() if k not in NON_KEY_FIELDS}
    for name, unused in OPTIONAL_KEY_FIELDS.items():
        if fields[name] == unused:
            del fields[name]
    if "dataset" in fields:  # the dataset's content digest and reading, not where it lies
        fields["dataset"] = ExternalDataset.from_record(fields["dataset"]).identity()
    fields["pretrained_key"] = pretrained_key
    return sha256_hex(fields)[:24]


def expand(preset: Preset) -> list[PlannedTrial]:
    """All trials of ``preset``, stage 1 first, in a deterministic order, without duplicates
    (expanded once, when the preset was validated)."""
    return list(preset._trials)


def _expand(preset: Preset) -> list[PlannedTrial]:
    trials: dict[str, PlannedTrial] = {}
    # The pre-training trials are built either way (each downstream trial takes its size
    # from its own), but planned only if a downstream mode loads their checkpoints.
    needs_checkpoints = any(mode in PRETRAINED_MODES for mode in preset.train_modes)
    pretrained: dict[tuple[str, str], PlannedTrial] = {}
    for size in preset.sizes:
        for family in preset.pretrain_families:
            planned = _pretraining(preset, size, family)
            pretrained[(size, family)] = trials.setdefault(planned.key, planned) if needs_checkpoints else planned
    grid = itertools.product(
        preset.sizes, preset.pretrain_families, preset.families, preset.shifts, preset.n_train,
        preset.train_modes, preset.lrs, preset.seeds, preset.data_seeds,
    )  # fmt: skip
    for size, source, family, shift, n_train, mode, lr, seed, data_seed in grid:
        if not _pairs(preset, source, family, mode):
            continue
        if family in preset.datasets and shift not in preset.datasets[family].shift_names:
            continue  # a dataset offers its own shifts
        for strategy in preset.finetune_strategies if mode == "finetune" else ("full",):
            planned = _downstream(
                preset,
                pretrained[(size, source)],
                source=source,
                family=family,
                shift=shift,
                n_train=n_train,
                mode=mode,
                lr=lr,
                seed=seed,
                data_seed=data_seed,
                strategy=strategy,
            )
            trials.setdefault(planned.key, planned)
    if preset.budget_probe:
        for probe in budget_probes(preset, list(trials.values())):
            trials.setdefault(probe.key, probe)
    return list(trials.values())


def _pretraining(preset: Preset, size: str, family: str) -> PlannedTrial:
    """The stage-1 trial of one size and pre-training set."""
    pre = preset.pretrain
    width, modes = parse_size(size)
    config = TrialConfig(
        mode="pretrain",
        family=family,
        param_range=_pretrain_range(preset, family),
        n_train=pre.n_train,
        width=width,
        modes=modes,
        lr=pre.lr,
        weight_decay=pre.weight_decay,
        batch_size=pre.batch_size,
        **_budget(pre),
        eval_every=pre.eval_every,
        seed=0,
        data_seed=preset.data_seeds[0],
        **_test_fields(preset, family),
        **_model_fields(preset),
    )
    return PlannedTrial(trial_key(config), "pretrain", "pretrain", config)


# One trial of the downstream grid as plain values (what an adaptive round adds, and what
# the manifest records): its position on every axis of the grid's product.
SPEC_FIELDS = ("size", "source", "family", "shift", "n_train", "mode", "lr", "seed", "data_seed", "strategy")


def spec_trials(preset: Preset, specs: list[Mapping[str, Any]]) -> list[PlannedTrial]:
    """The downstream trials of ``specs`` (mappings of SPEC_FIELDS: a grid position, its
    values free beyond the preset's axes), built as ``expand`` builds the grid's: a spec
    that lies on the grid gets the grid trial's key. Fine-tune and zero-shot specs need
    their (size, source) pre-training, which is built (and keyed) as the grid's."""
    out: dict[str, PlannedTrial] = {}
    for spec in specs:
        missing = sorted(set(SPEC_FIELDS) - set(spec))
        if missing:
            raise ValueError(f"an added trial lacks {missing}; it needs {', '.join(SPEC_FIELDS)}")
        base = _pretraining(preset, spec["size"], spec["source"])
        planned = _downstream(
            preset,
            base,
            source=spec["source"],
            family=spec["family"],
            shift=spec["shift"],
            n_train=int(spec["n_train"]),
            mode=spec["mode"],
            lr=float(spec["lr"]),
            seed=int(spec["seed"]),
            data_seed=int(spec["data_seed"]),
            strategy=spec["strategy"],
        )
        out.setdefault(planned.key, planned)
    return list(out.values())


def scaled_budget(config: TrialConfig, factor: float) -> TrialConfig:
    """``config`` with its budget times ``factor``: the epochs (and any step bounds), or the steps."""
    if config.epochs is not None:
        bounds = {k: round(factor * v) for k in ("min_steps", "max_steps") if (v := getattr(config, k)) is not None}
        return dataclasses.replace(config, epochs=config.epochs * factor, **bounds)
    return dataclasses.replace(config, steps=round(config.total_steps * factor))


def budget_probes(preset: Preset, trials: list[PlannedTrial]) -> list[PlannedTrial]:
    """Stage-"probe" copies, at twice the budget, of the scratch trials at the largest N
    (every learning rate, the first seed: a budget check, not a second measurement)."""
    largest = max(preset.n_train)
    probes = []
    for trial in trials:
        c = trial.config
        first_seed = c.seed == preset.seeds[0] and c.data_seed == preset.data_seeds[0]
        if trial.stage == "downstream" and c.mode == "scratch" and c.n_train == largest and first_seed:
            config = scaled_budget(c, 2)
            probes.append(PlannedTrial(trial_key(config), "probe", trial.shift, config))
    return probes


def _pairs(preset: Preset, source: str, family: str, mode: str) -> bool:
    """Whether a model pre-trained on ``source`` is planned on ``family``: a built-in family's
    on its own family (the mixture's on all three); where a dataset is either, any pair
    (a fine-tune replaces the lift or projection a different channel layout needs), but
    zero-shot only where the channel layouts match."""
    if source not in preset.datasets and family not in preset.datasets:
        return source in (family, "mixture")  # a single-family model reads only its own family's channels
    return mode != "zeroshot" or preset.layout(source) == preset.layout(family)


def _pretrain_range(preset: Preset, family: str) -> tuple[float, float] | None:
    """The pre-training data's range: the family's pre-training range (None), or a dataset's
    shift none (every sample where it has no such shift)."""
    if family in preset.datasets and "none" in preset.datasets[family].shift_names:
        return preset.datasets[family].shift_range("none")
    return None


def _test_fields(preset: Preset, family: str) -> dict[str, Any]:
    """The TrialConfig fields every trial of a preset's family shares: its grid and its
    validation and test sets (a dataset's: its own grid and test grids, and its record)."""
    if family in preset.datasets:
        ds = preset.datasets[family]
        extra = {"dataset": ds.to_dict(), "eval_resolutions": tuple(ds.test_resolutions)}
    else:
        extra = {"eval_resolutions": preset.eval_resolutions}
    return {"resolution": preset.resolution, "n_val": preset.n_val, "n_test": preset.n_test, **extra}


def _model_fields(preset: Preset, base: TrialConfig | None = None, family: str | None = None) -> dict[str, Any]:
    """padding and coords: the preset's for a model built here (None: the dataset defaults
    or none), the pre-trained ``base``'s for one loaded from its checkpoint, except a
    fine-tune onto a dataset ``family`` that ``base`` was not trained on: that model takes
    the fields a scratch model of the dataset has (``fno.train.adapt_to``)."""
    if base is not None and not (family in preset.datasets and family != base.family):
        return {"padding": base.padding, "coords": base.coords}
    return {"padding": preset.padding, "coords": preset.coords}


def _budget(stage: StageSettings) -> dict[str, Any]:
    """A stage's budget fields as TrialConfig takes them."""
    return {"steps": stage.steps, "epochs": stage.epochs, "min_steps": stage.min_steps, "max_steps": stage.max_steps}


def _downstream(
    preset: Preset,
    base: PlannedTrial,
    *,
    source: str,
    family: str,
    shift: str,
    n_train: int,
    mode: str,
    lr: float,
    seed: int,
    data_seed: int,
    strategy: str = "full",
) -> PlannedTrial:
    """One downstream trial, from the pre-training ``base`` of its size and ``source``.

    A fine-tune or zero-shot trial records its dependency as ``pretrained_key`` on the
    planned trial; its checkpoint path is set when it is submitted (runner.worker_config).
    """
    down = preset.downstream
    if mode == "zeroshot":  # no training: N, lr and seed cannot change the result
        n_train, lr, seed = 1, 1e-3, 0
    config = TrialConfig(
        mode=mode,
        family=family,
        param_range=preset.shift_range(family, shift),
        n_train=n_train,
        width=base.config.width,
        modes=base.config.modes,
        lr=lr,
        weight_decay=down.weight_decay,
        batch_size=down.batch_size,
        **({"steps": 0} if mode == "zeroshot" else _budget(down)),
        eval_every=down.eval_every,
        seed=seed,
        channels="union" if source == "mixture" and mode != "scratch" and family not in preset.datasets else "native",
        data_seed=data_seed,
        finetune_strategy=strategy,
        **_test_fields(preset, family),
        **_model_fields(preset, None if mode == "scratch" else base.config, family if mode == "finetune" else None),
    )
    pretrained_key = "" if mode == "scratch" else base.key
    return PlannedTrial(
        trial_key(config, pretrained_key),
        "downstream",
        shift,
        config,
        pretrained_key,
        "" if mode == "scratch" else source,
    )


def trial_flops(trial: PlannedTrial) -> float:
    """Training FLOPs of one trial: 3x forward (forward + backward) per sample seen,
    plus one forward per evaluated sample."""
    from fno.model import FNOConfig

    c = trial.config
    per_sample = FNOConfig(1, 1, c.width, c.modes, c.layers).flops_per_sample(c.resolution)
    seen = c.total_steps * c.batch
    evals = len(c.eval_steps()) * c.n_val + c.n_test
    return per_sample * (3 * seen + evals)


def estimate_flops(trials: list[PlannedTrial]) -> float:
    """Training FLOPs of the trials (sum of ``trial_flops``)."""
    return sum(trial_flops(t) for t in trials)
