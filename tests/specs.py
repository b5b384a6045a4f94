"""Task specs the tests write into templates folders they own (imported as `from specs import ...`,
like browser.py: a plain module, so no conftest.py shadows it)."""
from __future__ import annotations

import textwrap

GENERATIVE_SPEC = textwrap.dedent(
    """\
    name: echo_title
    cluster: summarization
    description: A tiny generative task made for the tests.
    license: CC0
    metric: rouge
    source:
      kind: jsonl
      splits: {train: "unused.jsonl"}
    fields:
      body: text
      title: meta.title
    templates:
      - id: echo_01
        inputs: "Write a title for: {{ body }}"
        targets: "{{ title }}"
      - id: echo_02
        inputs: "{{ body }}\\n\\nTitle?"
        targets: "{{ title }}"
      - id: echo_03
        inputs: "Write a text titled {{ title }}."
        targets: "{{ body }}"
        inverted: true
    samples:
      - {text: "The river rose overnight.", meta: {title: "Flood"}}
      - {text: "Prices fell in May.", meta: {title: "Deflation"}}
      - {text: "A new moon was found.", meta: {title: "Discovery"}}
      - {text: "The team won again.", meta: {title: "Victory"}}
      - {text: "Rain is expected.", meta: {title: "Forecast"}}
    """
)
