"""Importers: other prompt collections turned into ordinary flanforge task specs (pure, no Beam).

`promptsource.py` reads promptsource's `templates.yaml` files (the prompts behind P3 / T0), both
for `flanforge import promptsource DIR` and for a build that reads the collection in place.
"""
