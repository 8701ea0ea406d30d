"""One study per sweep folder: ``<out>/<sweep>/manifest.json`` records what its trials mean.

The first real run of a folder writes the manifest: the validated preset (every field,
after ``--set``, as plain JSON) and its SHA-256, the preset split into grid axes and
defining fields, the package version and the time. Every later run (and dry run)
compares its own preset with it before Ray starts and before it writes anything:

- the same study: it runs as before;
- only grid axes differ: it extends the study (values added to an axis are new
  trials; values left out are trials this run does not run, their rows kept), and
  the manifest records the union of every axis;
- a defining field differs: it is another study, refused (StudyChangedError) naming each
  field with its two values; ``--sweep NEW`` runs it in a folder of its own.

Grid axes (GRID_AXES) are the lists a study grows along without changing what its
existing trials mean, plus ``budget_probe``, a switch that only adds trials. Every
other preset field is defining: the resolution, the validation and test set sizes,
each stage's budget and recipe, the shift ranges (as in effect, defaults included),
and the data seed pre-training uses (the first of ``data_seeds``, recorded as
``pretrain.data_seed``). Not compared: the preset's name and the two stage-2 settings
that stage 2 takes from the grid (NOT_COMPARED). Execution settings (device, threads,
bf16, tf32, GPU share: ``fno_sweeps.grid.NON_KEY_FIELDS``) are flags, not preset
fields, and enter no key: they are neither, and not recorded.

A folder with results and no manifest (an older version's) is adopted: its first real
run records its preset as the manifest. A folder with a manifest and no results yet (a
first run that stopped before any trial finished) takes the new preset, saying so.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from fno import __version__
from fno.checks import sha256_hex
from fno.physics.families import SINGLE_FAMILIES
from fno.storage import Location
from fno.vocabulary import SHIFTS
from fno_sweeps.grid import LIST_AXES, Preset, StageSettings

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
# The lists a study grows along: a value added is new trials, a value removed is trials
# not run; the trials of the other values keep their meaning and their keys.
GRID_AXES = (
    *LIST_AXES,
    "finetune_strategies",
    "eval_resolutions",  # more test resolutions: more evaluations, no new trial
)
SWITCHES = ("budget_probe",)  # on: the budget probes are added, the other trials unchanged
# Preset fields compared nowhere: a label, and stage-2 settings that stage 2 takes from
# the grid (N and the learning rate).
NOT_COMPARED = ("name", "downstream.n_train", "downstream.lr", "adaptive")
# The adaptive rounds (sweeps/adaptive.py) a sweep has decided, in order: kept across
# every rewrite of the manifest, so that a re-run replays them before deciding new ones.
ROUNDS_KEY = "rounds"
DERIVED = {"pretrain.data_seed": " (the first of data_seeds)"}  # defining fields that are not preset fields


class StudyChangedError(ValueError):
    """The preset defines another study than the one a sweep folder holds."""


def preset_json(preset: Preset) -> dict[str, Any]:
    """Every field of ``preset`` as plain JSON (lists, not tuples)."""
    return json.loads(json.dumps(dataclasses.asdict(preset)))


def grid_axes(preset: Preset) -> dict[str, Any]:
    """The grid axes (lists) and switches (booleans) of ``preset``."""
    return json.loads(json.dumps({name: getattr(preset, name) for name in (*GRID_AXES, *SWITCHES)}))


def defining_fields(preset: Preset) -> dict[str, Any]:
    """Every defining field of ``preset`` by its dotted name: the preset's own fields, each
    stage's settings, the pre-training data seed and every shift range in effect."""
    skipped = {*GRID_AXES, *SWITCHES, *NOT_COMPARED, "ranges", "pretrain", "downstream"}
    out = {f.name: getattr(preset, f.name) for f in dataclasses.fields(preset) if f.name not in skipped}
    # A dataset is defined by its content (digest) and how it is read, not by where it lies.
    out["datasets"] = {name: ds.identity() for name, ds in preset.datasets.items()}
    for stage in ("pretrain", "downstream"):
        settings = getattr(preset, stage)
        for f in dataclasses.fields(StageSettings):
            if f"{stage}.{f.name}" not in NOT_COMPARED:
                out[f"{stage}.{f.name}"] = getattr(settings, f.name)
    out["pretrain.data_seed"] = preset.data_seeds[0]
    for family in SINGLE_FAMILIES:
        for shift in SHIFTS:
            out[f"ranges.{family}.{shift}"] = preset.shift_range(family, shift)
    return json.loads(json.dumps(out))


def build_manifest(preset: Preset, axes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of ``preset``, its grid axes replaced by ``axes`` (a study's union) if given."""
    axes = dict(axes or grid_axes(preset))
    recorded = {**preset_json(preset), **axes}
    return {
        "format": MANIFEST_FORMAT,
        "preset": recorded,
        "preset_sha256": sha256_hex(recorded),
        "grid_axes": axes,
        "defining": defining_fields(preset),
        "code_version": __version__,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def read_manifest(sweep_dir: Location) -> dict[str, Any] | None:
    """The manifest of ``sweep_dir``; None if it has none; ValueError naming the file if unreadable."""
    path = sweep_dir / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_bytes())
    except (FileNotFoundError, NotADirectoryError):  # no folder, or a file where it would be
        return None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path} is not valid JSON ({err}); move it aside to adopt the folder again") from err
    if not isinstance(manifest, dict) or not {"grid_axes", "defining"} <= set(manifest):
        raise ValueError(f"{path} is not a study manifest (no grid_axes and defining); move it aside")
    return manifest


@dataclass(frozen=True)
class StudyDiff:
    """How a preset differs from a study's manifest."""

    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # defining field -> (study's, now)
    added: dict[str, list[Any]] = field(default_factory=dict)  # axis -> values new to the study
    removed: dict[str, list[Any]] = field(default_factory=dict)  # axis -> study's values this run leaves out
    axes: dict[str, Any] = field(default_factory=dict)  # the union of the study's axes and this run's

    def refusal(self, where: Location) -> str:
        """The message that refuses the run: each changed field with its two values, and the way out."""
        lines = [
            f"  {name}{DERIVED.get(name, '')}: {_show(old)} in the study of {where}, {_show(new)} now"
            for name, (old, new) in self.changed.items()
        ]
        return (
            f"this preset defines another study than the one in {where} (its {MANIFEST_NAME}):\n"
            + "\n".join(lines)
            + "\nrun it as a new study, in a folder of its own, with --sweep NEW (or set these fields back): in one "
            "folder the report would pool the two studies' trials as seeds of the same points"
        )


def compare(manifest: Mapping[str, Any], preset: Preset) -> StudyDiff:
    """Compare ``preset`` with a study's ``manifest``: changed defining fields (those both
    record: a field one version lacks is not a change), axis values added and removed."""
    recorded, now = manifest["defining"], defining_fields(preset)
    changed = {name: (recorded[name], now[name]) for name in now if name in recorded and recorded[name] != now[name]}
    study_axes, axes = manifest["grid_axes"], grid_axes(preset)
    added, removed, union = {}, {}, dict(study_axes)
    for name, values in axes.items():
        old = study_axes.get(name, [] if name in GRID_AXES else False)
        if name in SWITCHES:
            union[name] = bool(old or values)
            if values and not old:
                added[name] = [True]
            elif old and not values:
                removed[name] = [True]
            continue
        new = [v for v in values if v not in old]
        gone = [v for v in old if v not in values]
        union[name] = [*old, *new]
        if new:
            added[name] = new
        if gone:
            removed[name] = gone
    return StudyDiff(changed, added, removed, union)


@dataclass(frozen=True)
class StudyCheck:
    """A run's verdict on its sweep folder: the lines to print and the manifest to write (None: keep)."""

    verdict: str  # new | same | extend | adopt | redefine
    lines: tuple[str, ...]
    manifest: dict[str, Any] | None


def check_study(sweep_dir: Location, preset: Preset, dry_run: bool = False) -> StudyCheck:
    """Compare ``preset`` with the study of ``sweep_dir``; StudyChangedError if it defines another
    study of a folder that has results. Reads only."""
    manifest = read_manifest(sweep_dir)
    has_rows = bool((sweep_dir / "results").files(".parquet"))
    would = "would " if dry_run else ""
    if manifest is None:
        if not has_rows:
            first = "the first run writes its manifest.json" if dry_run else f"{MANIFEST_NAME} written"
            return StudyCheck("new", (f"a new study in {sweep_dir}: {first}",), build_manifest(preset))
        line = (
            f"{sweep_dir} has results but no {MANIFEST_NAME} (an older version's): this run {would}adopt it as "
            "one study, with this preset as its manifest"
        )
        return StudyCheck("adopt", (line,), build_manifest(preset))
    diff = compare(manifest, preset)
    if diff.changed:
        if has_rows:
            raise StudyChangedError(diff.refusal(sweep_dir))
        fields = ", ".join(diff.changed)
        line = f"{sweep_dir} has no results yet: this run {would}redefine its study ({fields} changed)"
        return StudyCheck("redefine", (line,), build_manifest(preset))
    lines = [f"the same study as {sweep_dir / MANIFEST_NAME}"] if dry_run and not (diff.added or diff.removed) else []
    if diff.added:
        lines.append(f"{'would extend' if dry_run else 'extending'} the study in {sweep_dir}: {_axes_text(diff.added)}")
    if diff.removed:
        lines.append(
            f"this run leaves out part of the study in {sweep_dir} ({_axes_text(diff.removed, removed=True)}): those "
            "trials are not run now; their rows stay, and the report still reads them"
        )
    merged = build_manifest(preset, diff.axes)
    if manifest.get(ROUNDS_KEY):
        merged[ROUNDS_KEY] = manifest[ROUNDS_KEY]  # the same study: its rounds stay
    unchanged = all(manifest.get(k) == merged[k] for k in ("grid_axes", "defining", "preset"))
    return StudyCheck("extend" if diff.added else "same", tuple(lines), None if unchanged else merged)


def record_study(sweep_dir: Location, preset: Preset) -> StudyCheck:
    """Check ``preset`` against the study of ``sweep_dir`` again (this driver now holds the
    folder), print the verdict and write the manifest where it changes; whole or not at all."""
    check = check_study(sweep_dir, preset)
    if check.manifest is not None:
        text = json.dumps(check.manifest, indent=2, sort_keys=True) + "\n"
        (sweep_dir / MANIFEST_NAME).write_bytes(text.encode())
    for line in check.lines:
        print(line)
    return check


def read_rounds(sweep_dir: Location) -> list[dict[str, Any]]:
    """The adaptive rounds recorded in the manifest of ``sweep_dir``, in order (none: [])."""
    manifest = read_manifest(sweep_dir)
    rounds = (manifest or {}).get(ROUNDS_KEY, [])
    if not isinstance(rounds, list) or not all(isinstance(r, dict) and "round" in r for r in rounds):
        raise ValueError(f"{sweep_dir / MANIFEST_NAME}: '{ROUNDS_KEY}' is not a list of rounds; move the file aside")
    return rounds


def record_round(sweep_dir: Location, entry: Mapping[str, Any]) -> None:
    """Append (or replace, by its ``round`` number) one adaptive round in the manifest of
    ``sweep_dir``, which must exist (the driver wrote it when it took the folder)."""
    manifest = read_manifest(sweep_dir)
    if manifest is None:
        raise ValueError(f"{sweep_dir} has no {MANIFEST_NAME} to record an adaptive round in")
    rounds = [r for r in read_rounds(sweep_dir) if r["round"] != entry["round"]]
    manifest[ROUNDS_KEY] = sorted([*rounds, json.loads(json.dumps(dict(entry)))], key=lambda r: r["round"])
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (sweep_dir / MANIFEST_NAME).write_bytes(text.encode())


def _axes_text(axes: Mapping[str, list[Any]], removed: bool = False) -> str:
    """``{"n_train": [64, 128]}`` -> ``n_train + [64, 128]`` (removed: ``n_train [64, 128]``);
    a switch: ``budget_probe on`` (removed: ``budget_probe trials``)."""
    if removed:
        parts = [f"{name} trials" if name in SWITCHES else f"{name} {_show(v)}" for name, v in axes.items()]
    else:
        parts = [f"{name} on" if name in SWITCHES else f"{name} + {_show(v)}" for name, v in axes.items()]
    return "; ".join(parts)


def _show(value: Any) -> str:
    """A field's value as JSON (``unset`` for null)."""
    return "unset" if value is None else json.dumps(value)
