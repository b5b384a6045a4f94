"""BuildConfig: what one build produces, independent of where or how it runs.

It is recorded in full in the manifest; runner settings (workers, project, region) are not, since
the output must not depend on them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterable

from flanforge.beam_pipelines.catalog import COLLECTION_SETTINGS, SpecError, TaskSpec, parse_collections
from flanforge.beam_pipelines.render import RenderSettings, TemplateMode
from flanforge.beam_pipelines.sketch import NearDedupParams
from flanforge.schemas.records import DEFAULT_FORMATS, FORMATS

DEFAULT_TARGET_SHARD_BYTES = 128 << 20
DEFAULT_SEED = 0
DEFAULT_CONTAMINATION_NGRAM = 13  # words, as GPT-3's decontamination
DEFAULT_MAX_ERROR_RATE = 0.01
DEFAULT_MIXING_RATE_CAP = 3000  # FLAN: a task's mixing weight is min(n_train_examples, 3000)
OPTIONS_VARIANTS = ("template", "both")


@dataclass(frozen=True)
class BuildConfig:
    output: str
    templates: str | None = None
    tasks: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    template_mode: str = "all"
    max_examples_per_task: int | None = None
    seed: int = DEFAULT_SEED
    formats: tuple[str, ...] = DEFAULT_FORMATS
    target_shard_bytes: int = DEFAULT_TARGET_SHARD_BYTES
    demo: bool = False
    sources: dict[str, dict[str, str]] = field(default_factory=dict)  # task -> split -> path/glob
    recipe: str | None = None  # name@version of the recipe the settings came from
    holdout_clusters: tuple[str, ...] = ()
    options_variants: str = "template"  # template: as each template says; both: also without options
    mixing_rate_cap: int = DEFAULT_MIXING_RATE_CAP
    few_shot: int = 0  # K > 0: every train render also gets a variant preceded by K exemplars
    few_shot_separator: str = "\n\n"
    incremental: bool = True  # reuse unchanged tasks' rendered records from the output's cache
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE  # above it (unreadable or failed) a task fails the build
    near_dedup: bool = False  # drop examples that nearly repeat another of their split (near_dedup.py)
    near_dedup_ngram: int = NearDedupParams.ngram
    near_dedup_threshold: float = NearDedupParams.threshold
    near_dedup_bands: str = f"{NearDedupParams.bands}x{NearDedupParams.rows}"  # LSH bands x rows per band
    contamination_ngram: int = DEFAULT_CONTAMINATION_NGRAM  # 0: no contamination check
    decontaminate: bool = False  # drop train examples found in evaluation data (contamination.py)
    decontaminate_against: tuple[str, ...] = ()  # external evaluation sets, PATH[#field=NAME]
    # A recipe's `collections:`: name -> {weight, mixing_rate_cap (None: mixing_rate_cap), and any of
    # COLLECTION_SETTINGS for its tasks}; {} mixes the whole build examples-proportionally (docs/COLLECTIONS.md)
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.output:
            raise ValueError("--output is required: the directory (or gs:// prefix) to write shards and manifest.json to")
        TemplateMode.parse(self.template_mode)
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise ValueError(f"--formats {','.join(self.formats)}: choose from {', '.join(FORMATS)}")
        if self.max_examples_per_task is not None and self.max_examples_per_task < 1:
            raise ValueError("--max-examples-per-task must be at least 1")
        if self.target_shard_bytes < 1:
            raise ValueError("--target-shard-bytes must be positive")
        if self.options_variants not in OPTIONS_VARIANTS:
            raise ValueError(f"--options-variants {self.options_variants}: choose from {', '.join(OPTIONS_VARIANTS)}")
        if self.few_shot < 0:
            raise ValueError("--few-shot must be 0 (off) or a number of exemplars")
        if not 0 <= self.max_error_rate <= 1:
            raise ValueError(f"--max-error-rate {self.max_error_rate}: a share between 0 and 1 (e.g. 0.01)")
        if self.near_dedup_ngram < 1 or not 0 < self.near_dedup_threshold <= 1:
            raise ValueError("--near-dedup-ngram must be at least 1 and --near-dedup-threshold a Jaccard similarity in (0, 1]")
        self.near_dedup_params  # checks --near-dedup-bands
        if self.contamination_ngram < 0 or (self.decontaminate or self.decontaminate_against) and not self.contamination_ngram:
            raise ValueError("--contamination-ngram must be a number of words (0 turns the check off, which --decontaminate needs)")
        if self.mixing_rate_cap < 1:
            raise ValueError("--mixing-rate-cap must be at least 1")
        if self.collections:
            object.__setattr__(self, "collections", parse_collections(self.collections, "recipe"))
            for name in self.collections:
                try:
                    self.for_collection(name)  # its settings pass the same checks as the build's
                except ValueError as e:
                    raise ValueError(f"recipe {self.recipe or ''} collection {name}: {e}") from None

    def for_collection(self, collection: str) -> "BuildConfig":
        """The settings a collection's tasks are built with: the build's, with what the recipe sets
        for that collection (`max_examples_per_task: null` there lifts the build's cap)."""
        entry = self.collections.get(collection) or {}
        overrides = {k: entry[k] for k in COLLECTION_SETTINGS if k in entry}
        return replace(self, collections={}, **overrides) if overrides else self

    def cap_for(self, task: TaskSpec) -> int | None:
        return self.for_collection(task.collection).max_examples_per_task

    def render_settings_for(self, task: TaskSpec) -> RenderSettings:
        return self.for_collection(task.collection).render_settings

    @property
    def collection_weights(self) -> dict[str, float]:
        return {name: float(c["weight"]) for name, c in self.collections.items()}

    def mixing_weight(self, train_examples: int, collection: str) -> int:
        """A task's examples-proportional weight: its train examples, capped by its collection's
        mixing_rate_cap, else the build's."""
        cap = (self.collections.get(collection) or {}).get("mixing_rate_cap") or self.mixing_rate_cap
        return min(train_examples, cap)

    def check_collections(self, tasks: Iterable[TaskSpec]) -> None:
        """With `collections:`, every task built must belong to one of them (else its share of
        training would be undefined); checked when the build is planned, before any work."""
        if not self.collections:
            return
        stray = sorted(f"{t.name} ({t.collection})" for t in tasks if t.collection not in self.collections)
        if stray:
            raise SpecError([
                f"recipe {self.recipe}: task(s) of a collection it gives no weight: {', '.join(stray)}; "
                f"its collections: {', '.join(self.collections)} (add the collection to the recipe, or leave the tasks out)"
            ])

    @property
    def render_settings(self) -> RenderSettings:
        return RenderSettings(
            template_mode=self.template_mode, seed=self.seed, options_variants=self.options_variants,
            few_shot=self.few_shot, few_shot_separator=self.few_shot_separator, demo=self.demo,
        )

    @property
    def near_dedup_params(self) -> NearDedupParams:
        bands, x, rows = self.near_dedup_bands.partition("x")
        if not (x and bands.isdigit() and rows.isdigit() and int(bands) > 0 and int(rows) > 0):
            raise ValueError(f"--near-dedup-bands {self.near_dedup_bands}: BANDSxROWS, e.g. 20x6")
        return NearDedupParams(ngram=self.near_dedup_ngram, bands=int(bands), rows=int(rows), threshold=self.near_dedup_threshold)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("tasks", "clusters", "formats", "holdout_clusters", "decontaminate_against"):
            d[key] = list(d[key])
        return d


def parse_source_overrides(values: list[str] | None) -> dict[str, dict[str, str]]:
    """--source TASK[:SPLIT]=PATH_OR_GLOB[#OPTIONS] (repeatable) -> task -> split -> path; split
    defaults to train. The options are checked where they are read (sources/planning.py)."""
    out: dict[str, dict[str, str]] = {}
    for value in values or []:
        target, sep, path = value.partition("=")
        task, _, split = target.partition(":")
        if not sep or not task or not path:
            raise ValueError(f"--source {value!r}: expected TASK=PATH or TASK:SPLIT=PATH")
        split = split or "train"
        if split in out.get(task, {}):
            raise ValueError(f"--source {task}:{split} given twice ({out[task][split]!r} and {path!r}); pass one path or glob per split")
        out.setdefault(task, {})[split] = path
    return out
