"""Everything dbnet writes, and where it may write: ``paths`` (every output path check: never an
input or a weights file, never someone else's file, ``-`` for stdout), ``atomic`` (atomic writes,
used by every writer, the trainer's checkpoints included), ``writers`` (detect's JSON / JSONL /
ICDAR / table and the crops) and ``drawing`` (visualize's PNGs).

Imports nothing on its own: ``dbcli.outputs.atomic`` stays a foundation that any module may use."""
