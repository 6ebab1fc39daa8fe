"""The `vectra` command line: the top of the import graph. No other package imports it."""
