"""The `mugle` command line, on top of every other package."""
