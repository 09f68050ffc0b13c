"""``edgevad bench``: measure an exported artifact the way a camera would run it (torch-free).

- :mod:`~edgevad.bench.stats`: percentiles and latency summaries.
- :mod:`~edgevad.bench.timing`: timing proxies around engines and the per-frame stages.
- :mod:`~edgevad.bench.sources`: frames from a video file (timed decode) or synthetic ones.
- :mod:`~edgevad.bench.machine`: CPU, memory and library versions, so runs can be compared.
- :mod:`~edgevad.bench.runner`: one artifact x one stream count -> one result record.
- :mod:`~edgevad.bench.reference`: the PyTorch eager baseline (imports torch lazily).
- :mod:`~edgevad.bench.report`: the JSON document, its schema check, the rich tables.
"""
