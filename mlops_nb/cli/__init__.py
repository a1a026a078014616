"""The `mlops-nb` command: `main` assembles the command groups, one module each."""
