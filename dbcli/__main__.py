"""``python -m dbcli``: the ``dbnet`` command line."""

from dbcli.cli import run

run()
