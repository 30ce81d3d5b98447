"""``python -m taskstatus`` is the ``taskstatus`` command."""

from taskstatus.cli import main

main()
