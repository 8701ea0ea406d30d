"""What every section of the report shares: the Report and Section records, labels,
colours, and the rules for which tables are shown."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from fno_analysis.findings import Findings
from fno_analysis.points import SIZE_KEYS

HEALTH_COLUMNS = ("key", "stage", "mode", "status", "error", "wall_s")
MODE_COLOURS = {"scratch": "#d62728", "finetune": "#1f77b4", "zeroshot": "#7f7f7f", "pretrain": "#2ca02c"}
MIXTURE_COLOUR = "#2ca02c"
STRATEGY_COLOURS = {"head": "#9467bd", "lift-head": "#8c564b", "frozen-spectral": "#e377c2"}  # full: fine-tune's
ERROR_AXIS = "test relative L2 error"
N_AXIS = "downstream training examples N"

# Where a section sits on the page: the answer first, then the figures, then the checks,
# then the tables (group -> heading; the answer has none of its own).
GROUPS = {"answer": "", "figures": "Figures", "trust": "Can these numbers be trusted?", "tables": "Tables"}
LONG_TABLE = 15  # rows beyond which a table is folded on the page (its whole text is in details.md)
SHORT_CELL = 300  # characters a cell of the page's short tables may hold


@dataclass
class Table:
    """A table of the report: its title, its rows, and a sentence on how to read it."""

    title: str
    frame: pd.DataFrame
    note: str = ""


@dataclass
class Section:
    """One part of the page and of the Markdown files.

    ``figures``: (title, caption, plotly figure); ``shown``: short tables drawn in place;
    ``tables``: the long ones, drawn at the end of the page and written to details.md;
    ``html``: fragments the section escaped itself (a table with links); ``summary``:
    Markdown blocks for summary.md (none: the section is only in details.md).
    """

    key: str  # the HTML anchor, unique on the page
    heading: str
    group: str  # a key of GROUPS
    paragraphs: list[str] = field(default_factory=list)
    figures: list[tuple[str, str, object]] = field(default_factory=list)
    shown: list[Table] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"section {self.key!r}: group must be one of {sorted(GROUPS)}, got {self.group!r}")

    @property
    def in_place(self) -> bool:
        """Whether the section has anything to show where it stands (its long tables go to the end)."""
        return bool(self.figures or self.shown or self.html or self.paragraphs)

    @property
    def empty(self) -> bool:
        return not (self.in_place or self.tables)


@dataclass
class Report:
    """Figures (in page order) with their titles and captions, the sections that hold
    them, and the tables behind them."""

    points: pd.DataFrame
    fits: pd.DataFrame
    gains: pd.DataFrame
    health: pd.DataFrame
    flags: pd.DataFrame  # the diagnostics (fno_analysis.diagnostics.diagnose)
    findings: Findings
    probes: pd.DataFrame  # budget probes beside their base trials (empty without)
    target_error: float | None = None  # the gain's target; None: per (family, shift), fit.default_targets
    # Per-point test metrics at every test resolution (fno_analysis.evaluations.evaluation_points).
    evaluations: pd.DataFrame = field(default_factory=pd.DataFrame)
    surfaces: pd.DataFrame = field(default_factory=pd.DataFrame)  # fno_analysis.laws.fit_surface
    transfer: pd.DataFrame = field(default_factory=pd.DataFrame)  # fno_analysis.transfer.fit_transfer: the laws
    transfer_samples: pd.DataFrame = field(default_factory=pd.DataFrame)  # ... and the (D_F, D_T) they explain
    break_even: pd.DataFrame = field(default_factory=pd.DataFrame)  # fno_analysis.laws.break_even
    # (pretrain_family, width, modes, layers) -> the pre-training's training FLOPs
    pretrain_flops: dict = field(default_factory=dict)
    # The trials' validation curves: key, stage, curve keys, n_train, lr, seed, steps, eval_steps, eval_val_rel_l2.
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)
    rounds: list[dict] = field(default_factory=list)  # the adaptive rounds of the sweep's manifest (report.rounds)
    figures: list[tuple[str, str, object]] = field(default_factory=list)  # (title, caption, go.Figure)
    sections: list[Section] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def size_label(width: int, modes: int, layers: int, n_params: int) -> str:
    return f"w{width}-m{modes}-l{layers} ({count(n_params)} parameters)"


def count(n: float) -> str:
    """A parameter count as '16.9K', '1.2M'."""
    for unit, scale in (("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def sizes(df: pd.DataFrame) -> list[tuple[int, int, int, int]]:
    """Architectures (width, modes, layers) with their smallest parameter count (the
    single-family layout's), smallest first."""
    table = df.groupby(SIZE_KEYS, sort=False)["n_params"].min().reset_index().sort_values("n_params")
    return [tuple(int(v) for v in row) for row in table[[*SIZE_KEYS, "n_params"]].itertuples(index=False)]


def pretrain_sets(points: pd.DataFrame, family: str) -> list[str]:
    """The pre-training sets of a family's fine-tune and zero-shot points, the mixture last."""
    sources = points.loc[(points["family"] == family) & (points["mode"] != "scratch"), "pretrain_family"].unique()
    return sorted(sources, key=lambda s: (s == "mixture", s))


def largest_size_rows(
    table: pd.DataFrame, points: pd.DataFrame, family: str
) -> tuple[pd.DataFrame, tuple[int, int, int, int]]:
    """The rows of ``table`` of ``family`` at its largest architecture among ``points``, and that architecture."""
    here = table[table["family"] == family]
    size = sizes(points[points["family"] == family])[-1]
    return here[(here[SIZE_KEYS] == pd.Series(dict(zip(SIZE_KEYS, size[:3], strict=True)))).all(axis=1)], size


def is_blank(value) -> bool:
    """An empty cell: None, NaN, '' or a list/array with nothing in it."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str):
        return value.strip() == "" or value == "None"
    if hasattr(value, "__len__"):
        return len(value) == 0
    return bool(pd.isna(value)) if pd.api.types.is_scalar(value) else False


def without_empty_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` less its columns that hold nothing in any row."""
    keep = [c for c in table.columns if not all(is_blank(v) for v in table[c])]
    return table[keep]


def worth_showing(table: pd.DataFrame | None, values: tuple[str, ...] = ()) -> pd.DataFrame | None:
    """The table to show, its empty columns dropped; None where it has no rows, or where
    none of its ``values`` columns (its results, as opposed to its keys and notes) holds
    anything."""
    if table is None or table.empty:
        return None
    table = without_empty_columns(table)
    if table.empty or table.shape[1] == 0 or (values and not set(values) & set(table.columns)):
        return None
    return table


def shorten(text: str, limit: int = SHORT_CELL) -> str:
    """``text`` cut to about ``limit`` characters at a separator, with a mark that it was cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 20]
    for separator in ("; ", ", ", " "):
        at = cut.rfind(separator)
        if at > limit // 2:
            cut = cut[:at]
            break
    return cut.rstrip(" ;,") + " ... (in full below)"
