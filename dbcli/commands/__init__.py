"""The ``dbnet`` subcommands, one thin module each: options in (``common`` turns the options
dataclasses into typer options), one library call, a summary line out. ``dbcli.cli`` assembles them."""
