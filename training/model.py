"""The models: KerasHub backbones behind the one interface the trainer and evaluator use.

`t5`: a KerasHub T5Seq2SeqLM (encoder-decoder). `causal_lm`: a decoder-only model. For GPT-2
style backbones (the tiny preset, GPT-2 presets) we call the backbone's own layers with a
block-diagonal causal mask and per-example positions, so packed examples never attend to each
other; other KerasHub causal LMs only take a padding mask, so they train one example per row.
`--preset tiny` builds a small randomly initialised model from config: no download.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from flanforge.schemas.files import is_remote
from flanforge.training.errors import TrainingInputError

MODEL_KINDS = ("t5", "causal_lm")
TINY = "tiny"
TINY_CONFIG = {"num_layers": 2, "num_heads": 2, "hidden_dim": 64, "intermediate_dim": 128, "dropout": 0.0}


@dataclass(frozen=True, kw_only=True)
class ModelSettings:
    """The model and input shape, shared by `flanforge train` and `flanforge evaluate` configs.

    Keyword-only, so configs that extend it keep their own required fields first."""

    model: str = "t5"
    preset: str = TINY
    tokenizer: str | None = None
    seq_len_inputs: int = 512
    seq_len_targets: int = 128
    batch_size: int = 32
    precision: str = "auto"


class ModelConfigError(TrainingInputError):
    """The model cannot be built as asked (unknown preset, vocabulary or length mismatch)."""


def resolve_preset(preset: str) -> str:
    """The preset as the trainer loads it: `tiny`, a remote handle, or a local directory. A
    KerasHub preset name (`t5_small_multi`) is downloaded once into the local Kaggle cache and its
    directory returned, so the model and its own vocabulary come from the same files; offline,
    that fails at once with what to do instead. Anything else fails early, in one line."""
    if preset == TINY or is_remote(preset):
        return preset
    if os.sep in preset or preset.startswith(".") or os.path.exists(preset):
        if not os.path.isdir(preset):
            raise ModelConfigError(f"--preset {preset}: no such directory (a KerasHub preset saved with save_to_preset)")
        return preset
    import keras_hub

    known = keras_hub.models.Backbone.presets
    if preset not in known:
        raise ModelConfigError(
            f"--preset {preset}: not 'tiny', not a local directory, and not a KerasHub preset name "
            "(see keras_hub.models.Backbone.presets)"
        )
    handle = known[preset].get("kaggle_handle", "")
    try:
        import kagglehub

        return kagglehub.model_download(handle.removeprefix("kaggle://"))
    except Exception as e:  # kagglehub/requests raise many types; all mean "could not fetch it here"
        raise ModelConfigError(
            f"--preset {preset}: the KerasHub preset ({handle}) could not be downloaded ({type(e).__name__}); "
            f"on a machine with network, save it with keras_hub.models.Backbone.from_preset({preset!r}).save_to_preset(DIR) "
            f"(and its tokenizer with keras_hub.tokenizers.Tokenizer.from_preset({preset!r}).save_to_preset(DIR)), "
            "then pass --preset DIR"
        ) from None


def check_fits(backbone: Any, vocab_size: int, max_length: int) -> None:
    """A preset's embedding must cover the tokenizer and its positions the sequence length."""
    if backbone.vocabulary_size < vocab_size:
        raise ModelConfigError(
            f"the tokenizer has {vocab_size} tokens but the model's embedding only {backbone.vocabulary_size}; "
            "use the preset's own tokenizer"
        )
    limit = getattr(backbone, "max_sequence_length", None)
    if limit is not None and limit < max_length:
        raise ModelConfigError(f"sequences of {max_length} tokens do not fit the model's {limit} positions; lower --seq-len-*")


def segment_attention_mask(segment_ids: Any) -> Any:
    """[B, L, L] mask: a token may attend to a token of the same (non-padding) example."""
    from keras import ops

    same = ops.equal(ops.expand_dims(segment_ids, 2), ops.expand_dims(segment_ids, 1))
    return ops.cast(ops.logical_and(same, ops.expand_dims(segment_ids > 0, 1)), "int32")


def packed_causal_lm_class() -> type:
    """Defined on first use so importing this module does not import Keras."""
    import keras

    class PackedCausalLM(keras.Model):
        """A GPT-2 backbone run with attention kept inside each packed example."""

        def __init__(self, backbone: Any, **kwargs: Any):
            super().__init__(**kwargs)
            self.backbone = backbone

        def call(self, inputs: dict, training: bool = False) -> Any:
            bb = self.backbone
            tokens = bb.token_embedding(inputs["token_ids"])
            x = bb.embeddings_add((tokens, bb.position_embedding(tokens, positions=inputs["positions"])))
            x = bb.embeddings_dropout(x, training=training)
            mask = segment_attention_mask(inputs["segment_ids"])
            for layer in bb.transformer_layers:
                x = layer(x, decoder_padding_mask=inputs["padding_mask"], decoder_attention_mask=mask, training=training)
            return bb.token_embedding(bb.layer_norm(x), reverse=True)

    return PackedCausalLM


@dataclass
class LanguageModel:
    """A Keras model plus what the data side needs to know about it."""

    kind: str
    keras_model: Any
    packs: bool  # whether rows may hold several examples

    def logits(self, x: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.keras_model.predict_on_batch(x), dtype=np.float32)


def build_model(kind: str, preset: str, vocab_size: int, max_length: int) -> LanguageModel:
    """The trainable model: tiny and random from config, or a KerasHub preset (weights included)."""
    import keras_hub

    if kind not in MODEL_KINDS:
        raise ModelConfigError(f"--model {kind}: choose from {', '.join(MODEL_KINDS)}")
    if preset == TINY and kind == "t5":
        backbone = keras_hub.models.T5Backbone(vocabulary_size=vocab_size, **TINY_CONFIG)
        task = keras_hub.models.T5Seq2SeqLM(backbone=backbone, preprocessor=None)
    elif preset == TINY:
        backbone = keras_hub.models.GPT2Backbone(vocabulary_size=vocab_size, max_sequence_length=max_length, **TINY_CONFIG)
        task = None
    else:
        task_cls = keras_hub.models.Seq2SeqLM if kind == "t5" else keras_hub.models.CausalLM
        task = task_cls.from_preset(preset, preprocessor=None)
        backbone = task.backbone
    check_fits(backbone, vocab_size, max_length)
    if kind == "causal_lm" and isinstance(backbone, keras_hub.models.GPT2Backbone):
        return LanguageModel(kind, packed_causal_lm_class()(backbone), packs=True)
    return LanguageModel(kind, task, packs=False)
