"""The strict grammars of every member-controlled value, one module per family of values:
``dns`` (names, addresses, record data), ``mail`` (addresses, list names), ``web`` (URLs,
Apache and mod_rewrite values), ``system`` (ports, Unix names, paths), over the shared
pieces of ``base``. Callers use them through :mod:`domtool.validate` (``KINDS``, ``check_X``,
``is_X``); the quoting for zone files and Apache is :mod:`domtool.quoting`."""
