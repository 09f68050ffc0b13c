"""``python -m edgevad`` is the ``edgevad`` command."""

from edgevad.cli.main import main

main()
