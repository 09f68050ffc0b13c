"""Anomaly heads in PyTorch: the part of each model that turns backbone features into scores.

One module per head (``mil``, ``mrm``, ``dmrm``, ``dam``, ``joint``), each with a ``build_*``
builder that ``edgevad.artifact.zoo`` names by path; ``mlp`` holds the segment scorer MIL/MRM/DMRM share
and ``losses`` the training objectives as the papers publish them. Nothing is imported eagerly:
the builders are resolved lazily from the zoo specs.
"""
