"""The ``edgevad`` command (typer): the top of the package, nothing below imports it.

- :mod:`~edgevad.cli.main`: the typer app and ``main()`` (the console script and
  ``python -m edgevad``); ``models``, ``weights``, ``version``.
- :mod:`~edgevad.cli.run`: ``edgevad run`` (sources -> Detector -> run folder).
- :mod:`~edgevad.cli.outputs`: what ``edgevad run`` writes (scores, events, video, plot).
- :mod:`~edgevad.cli.bench`: ``edgevad bench``.
- :mod:`~edgevad.cli.triton`: ``edgevad triton`` and ``edgevad triton-bench``.
- :mod:`~edgevad.cli.training`: the training-side commands (``extract``, ``train``, ``eval``,
  ``export``, ``calibrate``...), which import ``edgevad_export`` (torch) only when they run.
- :mod:`~edgevad.cli.progress`: the one progress bar (rich) of every long job.

This file imports nothing, so ``edgevad.cli.progress`` costs no typer app.
"""
