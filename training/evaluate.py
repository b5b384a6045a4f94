"""`flanforge evaluate`: zero-shot scores on held-out clusters, tuned next to untuned.

Tasks with answer options are scored by rank classification (FLAN): the log-likelihood of each
option given the input, summed over the option's tokens and its EOS, and the best one is the
prediction. Generative tasks are decoded greedily and scored with exact match, ROUGE-L
(rouge-score) and BLEU (sacrebleu). Inverted templates are training augmentation and are not
evaluated. Scores are computed per template, averaged over templates per task (FLAN's headline
number; the best template is reported too) and over tasks per cluster.
"""
from __future__ import annotations

import os
import re
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from flanforge.schemas.manifest import Manifest
from flanforge.training import checkpoint as ckpt_lib
from flanforge.training.data import check_clusters, eval_split, open_corpus, read_output_shard, train_shards, verify_shard_files
from flanforge.training.devices import DataParallel, detect, use_precision
from flanforge.training.errors import TrainingInputError
from flanforge.training.features import BatchLayout, TokenizedExample, make_batch, tokenize, tokenize_all
from flanforge.training.model import TINY, LanguageModel, ModelSettings, resolve_preset
from flanforge.training.tokenizer import Tokenizer, load_tokenizer, train_tiny_tokenizer
from flanforge.training.train import TINY_TOKENIZER_FILE, corpus_texts, load_model

EVAL_COLUMNS = ("inputs", "targets", "task", "cluster", "template_id", "template_type", "options", "answer_index")
SKIPPED_TEMPLATE_TYPES = ("inverted", "free_text")  # no options to rank
GENERATION_METRICS = ("exact_match", "rouge_l", "bleu")


@dataclass(frozen=True)
class EvalExample:
    inputs: str
    targets: str
    task: str
    cluster: str
    template_id: str
    template_type: str
    options: tuple[str, ...]
    answer_index: int

    @property
    def ranked(self) -> bool:
        return bool(self.options) and self.answer_index >= 0


@dataclass(frozen=True)
class EvalConfig(ModelSettings):
    data: str
    checkpoint: str  # a run directory, one checkpoint directory, or "none" (the untuned preset)
    fmt: str = "parquet"
    clusters: tuple[str, ...] = ()  # default: the run's held-out clusters
    max_examples_per_template: int | None = None
    baseline: bool = True  # also score the untuned model
    output: str | None = None
    seed: int = 0


def load_eval_examples(manifest: Manifest, fmt: str, clusters: Sequence[str], max_per_template: int | None) -> list[EvalExample]:
    """The eval split's records of `clusters` (inverted templates left out), at most N per template."""
    split = eval_split(manifest)
    shards = manifest.shards_for(fmt=fmt, splits=[split], clusters=clusters)
    if not shards:
        raise TrainingInputError(f"the {split} split has no {fmt} shards for cluster(s) {', '.join(clusters)}")
    verify_shard_files(manifest, shards)
    per_template: dict[tuple[str, str], int] = defaultdict(int)
    out = []
    for shard in sorted(shards, key=lambda s: s.path):
        for r in read_output_shard(manifest, shard, EVAL_COLUMNS).to_pylist():
            key = (r["task"], r["template_id"])
            if r["template_type"] in SKIPPED_TEMPLATE_TYPES or (max_per_template and per_template[key] >= max_per_template):
                continue
            per_template[key] += 1
            out.append(EvalExample(**{**r, "options": tuple(r["options"])}))
    return out


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    m = logits.max(axis=-1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))


def sequence_log_likelihood(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per row: sum over weighted positions of log p(label)."""
    picked = np.take_along_axis(_log_softmax(logits), labels[..., None].astype(np.int64), axis=-1)[..., 0]
    return (picked * weights).sum(axis=-1)


def _fixed_batches(items: list[TokenizedExample], batch_size: int) -> Iterable[tuple[list[TokenizedExample], int]]:
    """Chunks padded to `batch_size` by repeating the last item, so every call has the same shapes."""
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        yield chunk + [chunk[-1]] * (batch_size - len(chunk)), len(chunk)


def option_scores(lm: LanguageModel, tok: Tokenizer, layout: BatchLayout, examples: list[EvalExample], batch_size: int) -> list[np.ndarray]:
    """Log-likelihood of every option of every example given its input."""
    pairs = [(ex.inputs, option) for ex in examples for option in ex.options]
    flat: list[float] = []
    for chunk, n in _fixed_batches(tokenize_all(tok, pairs, layout), batch_size):
        batch = make_batch(layout, chunk, tok.pad_id)
        flat.extend(sequence_log_likelihood(lm.logits(batch.x), batch.labels, batch.weights)[:n])
    out, i = [], 0
    for ex in examples:
        out.append(np.array(flat[i : i + len(ex.options)]))
        i += len(ex.options)
    return out


def rank_classify(scores: list[np.ndarray]) -> list[int]:
    return [int(np.argmax(s)) for s in scores]


def greedy_generate(lm: LanguageModel, tok: Tokenizer, layout: BatchLayout, inputs: list[str], batch_size: int) -> list[str]:
    """Greedy decoding up to --seq-len-targets tokens (no KV cache: each step reruns the model on fixed shapes)."""
    prompts = [tokenize(tok, text, "", layout.lengths, eos_on_inputs=layout.eos_on_inputs) for text in inputs]
    decode = _decode_seq2seq if layout.kind == "t5" else _decode_causal
    out: list[str] = []
    for chunk, n in _fixed_batches(prompts, batch_size):
        ids = decode(lm, chunk, layout, tok)
        out.extend(tok.decode(_until_eos(row, tok.eos_id)) for row in ids[:n])
    return out


def _until_eos(ids: Iterable[int], eos: int) -> list[int]:
    out = []
    for i in ids:
        if i == eos:
            break
        out.append(int(i))
    return out


def _decode_seq2seq(lm: LanguageModel, prompts: list[TokenizedExample], layout: BatchLayout, tok: Tokenizer) -> np.ndarray:
    x = make_batch(layout, prompts, tok.pad_id).x
    b, steps = len(prompts), layout.lengths.targets
    x["decoder_token_ids"] = np.full((b, steps), tok.pad_id, np.int32)
    x["decoder_padding_mask"] = np.zeros((b, steps), np.int32)
    generated = np.full((b, steps), tok.eos_id, np.int32)
    for t in range(steps):
        x["decoder_padding_mask"][:, t] = 1
        generated[:, t] = lm.logits(x)[:, t].argmax(-1)
        if t + 1 < steps:
            x["decoder_token_ids"][:, t + 1] = generated[:, t]
        if (generated[:, : t + 1] == tok.eos_id).any(axis=1).all():
            break
    return generated


def _decode_causal(lm: LanguageModel, prompts: list[TokenizedExample], layout: BatchLayout, tok: Tokenizer) -> np.ndarray:
    length, steps = layout.lengths.total, layout.lengths.targets
    b = len(prompts)
    tokens = np.full((b, length), tok.pad_id, np.int32)
    cur = np.array([len(p.inputs) for p in prompts])
    for r, p in enumerate(prompts):
        tokens[r, : cur[r]] = p.inputs
    generated = np.full((b, steps), tok.eos_id, np.int32)
    rows = np.arange(b)
    for t in range(steps):
        valid = (np.arange(length)[None, :] < cur[:, None]).astype(np.int32)
        x = {"token_ids": tokens, "padding_mask": valid}
        if layout.packed:
            x.update(segment_ids=valid, positions=np.broadcast_to(np.arange(length, dtype=np.int32), (b, length)).copy())
        generated[:, t] = lm.logits(x)[rows, cur - 1].argmax(-1)
        tokens[rows, np.minimum(cur, length - 1)] = generated[:, t]
        cur = np.minimum(cur + 1, length)
        if (generated[:, : t + 1] == tok.eos_id).any(axis=1).all():
            break
    return generated


def normalize_answer(text: str) -> str:
    """Case- and whitespace-insensitive comparison, as FLAN's exact match."""
    return re.sub(r"\s+", " ", text.strip().lower())


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    return 100.0 * float(np.mean([normalize_answer(p) == normalize_answer(r) for p, r in zip(predictions, references)]))


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F1 x 100 (Google's rouge-score, with stemming, as in T5's evaluation)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return 100.0 * float(np.mean([scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]))


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU from sacrebleu with its default 13a tokenisation."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


METRIC_FNS: dict[str, Callable[[Sequence[str], Sequence[str]], float]] = {
    "exact_match": exact_match, "rouge_l": rouge_l, "bleu": bleu,
}


def score_templates(lm: LanguageModel, tok: Tokenizer, layout: BatchLayout, examples: list[EvalExample], batch_size: int) -> list[dict[str, Any]]:
    """One row per (task, template): its metrics and example count."""
    groups: dict[tuple[str, str, str], list[EvalExample]] = defaultdict(list)
    for ex in examples:
        groups[(ex.cluster, ex.task, ex.template_id)].append(ex)
    rows = []
    for (cluster, task, template), exs in sorted(groups.items()):
        row: dict[str, Any] = {"cluster": cluster, "task": task, "template_id": template, "n": len(exs)}
        ranked = [e for e in exs if e.ranked]
        if ranked:
            picks = rank_classify(option_scores(lm, tok, layout, ranked, batch_size))
            row["accuracy"] = 100.0 * float(np.mean([p == e.answer_index for p, e in zip(picks, ranked)]))
        generative = [e for e in exs if not e.options]
        if generative:
            predictions = greedy_generate(lm, tok, layout, [e.inputs for e in generative], batch_size)
            row.update({m: METRIC_FNS[m](predictions, [e.targets for e in generative]) for m in GENERATION_METRICS})
        rows.append(row)
    return rows


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task: mean and best over templates; per cluster: mean over its tasks' template means."""
    metrics = ("accuracy", *GENERATION_METRICS)
    tasks: dict[str, dict[str, Any]] = {}
    for task in sorted({r["task"] for r in rows}):
        mine = [r for r in rows if r["task"] == task]
        entry: dict[str, Any] = {"cluster": mine[0]["cluster"], "templates": len(mine), "examples": sum(r.get("n", 0) for r in mine)}
        for m in metrics:
            values = [r[m] for r in mine if m in r]
            if values:
                entry[m] = float(np.mean(values))
                entry[f"{m}_best_template"] = float(np.max(values))
        tasks[task] = entry
    clusters: dict[str, dict[str, float]] = {}
    for cluster in sorted({t["cluster"] for t in tasks.values()}):
        mine = [t for t in tasks.values() if t["cluster"] == cluster]
        clusters[cluster] = {m: float(np.mean([t[m] for t in mine if m in t])) for m in metrics if any(m in t for t in mine)}
    return {"templates": rows, "tasks": tasks, "clusters": clusters}


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """One line per (task, metric) and (cluster, metric), one column per model, plus the gain."""
    names = list(results)
    first = results[names[0]]
    header = ["cluster", "task", "examples", "metric", *names] + (["gain"] if len(names) == 2 else [])
    lines = [header]
    examples = {task: t.get("examples", 0) for task, t in first["tasks"].items()}
    entries = [(t["cluster"], task, "tasks", task, examples[task]) for task, t in first["tasks"].items()]
    entries += [
        (cluster, "(mean)", "clusters", cluster, sum(n for task, n in examples.items() if first["tasks"][task]["cluster"] == cluster))
        for cluster in first["clusters"]
    ]
    for cluster, label, level, key, count in entries:
        for metric in [m for m in ("accuracy", *GENERATION_METRICS) if m in first[level][key]]:
            values = [results[n][level][key][metric] for n in names]
            gain = [f"{values[1] - values[0]:+.1f}"] if len(values) == 2 else []
            lines.append([cluster, label, str(count), metric, *(f"{v:.1f}" for v in values), *gain])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def _settings(config: EvalConfig) -> tuple[dict[str, Any], ckpt_lib.Checkpoint | None, str | None, tuple[str, ...]]:
    """(model settings, checkpoint, tokenizer path, clusters) from a run directory or the flags."""
    if config.checkpoint == "none":
        settings = {k: v for k, v in asdict(config).items() if k in ("model", "preset", "seq_len_inputs", "seq_len_targets", "seed")}
        settings["preset"] = resolve_preset(config.preset)
        return {**settings, "learning_rate": 1e-4}, None, config.tokenizer, config.clusters
    run_dir, ckpt = ckpt_lib.resolve_checkpoint(config.checkpoint)
    run = ckpt_lib.read_run(run_dir)
    return run["config"], ckpt, os.path.join(run_dir, run["tokenizer"]), config.clusters or tuple(run["config"]["holdout_clusters"])


def eval_tokenizer(path: str | None, settings: dict[str, Any], manifest: Manifest, fmt: str, clusters: tuple[str, ...], scratch: str) -> Tokenizer:
    """The run's tokenizer; for an untuned tiny model, one trained on the corpus as `train` would."""
    if path:
        return load_tokenizer(path)
    if settings["preset"] != TINY:
        return load_tokenizer(settings["preset"])
    shards = train_shards(manifest, fmt, clusters)
    return train_tiny_tokenizer(corpus_texts(manifest, shards), os.path.join(scratch, TINY_TOKENIZER_FILE))


def evaluate(config: EvalConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Score the untuned model (unless baseline=False) and the checkpoint; write and return the results."""
    settings, checkpoint, tok_path, clusters = _settings(config)
    if not clusters:
        raise TrainingInputError("no clusters to evaluate: pass --clusters (the run held none out)")
    manifest = open_corpus(config.data, config.fmt)
    check_clusters(manifest, clusters)
    examples = load_eval_examples(manifest, config.fmt, clusters, config.max_examples_per_template)
    with tempfile.TemporaryDirectory() as scratch:
        tok = eval_tokenizer(tok_path, settings, manifest, config.fmt, clusters, scratch)
    acc = detect()
    parallel = DataParallel.setup(acc, config.batch_size)
    use_precision(config.precision, acc)
    models = {"untuned": None} if checkpoint is None or config.baseline else {}
    if checkpoint is not None:
        models["tuned"] = checkpoint
    results = {}
    for name, ckpt in models.items():
        lm, layout = load_model(settings, tok, parallel, ckpt)
        log(f"scoring {name} model on {len(examples)} {', '.join(clusters)} examples")
        results[name] = aggregate(score_templates(lm, tok, layout, examples, config.batch_size))
    table = format_table(results)
    log(table)
    out = {"split": eval_split(manifest), "clusters": list(clusters), "checkpoint": checkpoint and checkpoint.path, "results": results, "table": table}
    if config.output:
        ckpt_lib.write_json(config.output, out)
        log(f"results: {config.output}")
    return out
