"""The artifact contract: what a model is, how its features were made, and what an export holds.

- :mod:`~edgevad.artifact.zoo`: the model zoo as data (names, input geometry, classes, builders).
- :mod:`~edgevad.artifact.manifest`: ``manifest.json``, the one description of an exported
  artifact that the runtime trusts and checks.
- :mod:`~edgevad.artifact.protocols`: feature protocols, so a head is only fed features made its
  way; :mod:`~edgevad.artifact.ucf_crime` is the named ``ucf-crime-r3d34`` protocol.
- :mod:`~edgevad.artifact.segments`: the weakly-supervised protocol's segment arithmetic.
- :mod:`~edgevad.artifact.compare`: Polygraphy-style output comparison with tolerances (parity).
- :mod:`~edgevad.artifact.records`: how records name input files (name, SHA-256, portable path).
- :mod:`~edgevad.artifact.defaults`: the default model's artifact, built once into the cache.

Torch-free; imports :mod:`edgevad.errors` and :mod:`edgevad.fetch` only (the default model's
first build imports the training side lazily). The training side (``edgevad_export``) and the
runtime both read these, so ``--model dmrm`` means one thing everywhere.
"""
