"""Source: where org files come from (a directory or a git commit tree), loading and YAML parsing."""
