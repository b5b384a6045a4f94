"""`flanforge stats DIR`: a self-contained HTML report and a terminal summary of a built corpus.

gather.py reads the manifest and a bounded sample of the Parquet shards into a CorpusStats;
histogram.py holds the length histograms; charts.py draws inline SVG; page.py lays out the HTML;
command.py is the command (terminal summary, where the report is written). Nothing here imports
Beam, except command.py writing a report to gs:// through beam_pipelines/storage.py.
"""
