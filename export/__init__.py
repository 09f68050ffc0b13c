"""edgevad_export (folder ``export/``): the training side — model zoo, weights, export.

Needs the ``[train]`` extra (torch). The runtime package ``edgevad`` never imports this one.
"""
