"""``python -m edgevad`` is the ``edgevad`` command."""

from edgevad.cli import main

main()
