"""Subcommands of `hiclaw-gitops`, one module each; every module exposes `register(subparsers)`."""
