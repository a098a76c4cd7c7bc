"""The ``musicdiff`` command (``main``): one entry point, a module per subcommand family (``fad``,
``creative``, ``profiles``)."""
