"""The slave agent: applies a host's part of the desired state to its daemons."""
