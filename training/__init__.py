"""The trainer: `flanforge train` / `flanforge evaluate` on a build's shards (docs/TRAINING.md).

data.py (manifest -> verified shards -> per-cluster streams at each task's rate -> seeded mixture), tokenizer.py,
features.py (token arrays, packing), model.py (KerasHub models), devices.py (hardware, bf16,
data parallelism), train.py, checkpoint.py (run directory), evaluate.py, cli.py.
Never imports Beam; imports TensorFlow only for TFRecord shards or the TF backend.
"""
