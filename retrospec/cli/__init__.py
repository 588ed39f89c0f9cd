"""The `retrospec` command: the root app and one module per command group."""
