"""Command-line tools: domtool, domtool-admin, dbtool, vmail."""
