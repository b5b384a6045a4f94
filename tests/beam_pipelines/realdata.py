"""Real dataset excerpts (tests/data/realdata, byte for byte; see its README) and a user's spec
over them that several tests build: e-SNLI from its line-aligned release files."""
from __future__ import annotations

from pathlib import Path

REALDATA = Path(__file__).resolve().parents[1] / "data" / "realdata"


def esnli_spec(split: str) -> str:
    """An e-SNLI spec reading the four line-aligned files as `split`, with a free-text template
    (the explanation) and an inverted one that applies to entailed pairs only."""
    return ESNLI_SPEC.format(dir=REALDATA / "esnli", split=split)


ESNLI_SPEC = """
name: esnli
cluster: nli
description: e-SNLI from its line-aligned release files, with explanations as free-text targets.
license: MIT (e-SNLI); SNLI is CC BY-SA 4.0.
metric: accuracy
source:
  kind: aligned
  splits:
    {split}:
      premise: {dir}/s1.test
      hypothesis: {dir}/s2.test
      label: {dir}/labels.test
      explanation: {dir}/preproc1_expl_1.test
answers:
  options: [entailment, neutral, contradiction]
  label: label
templates:
  - id: esnli_01
    inputs: "{{{{ premise }}}}\\nDoes this mean that \\"{{{{ hypothesis }}}}\\"?"
    targets: "{{{{ answer }}}}"
  - id: esnli_02
    inputs: "Premise: {{{{ premise }}}}\\nHypothesis: {{{{ hypothesis }}}}\\nWhy is the answer {{{{ answer }}}}?"
    targets: "{{{{ explanation | detokenize }}}}"
    free_text: true
  - id: esnli_03
    inputs: "Write a sentence that follows from: {{{{ premise }}}}"
    targets: "{{{{ hypothesis }}}}"
    inverted: true
    filter: answer == "entailment"
samples:
  - {{premise: "A man plays a guitar .", hypothesis: "A person makes music .", label: entailment, explanation: "playing a guitar makes music"}}
"""
