"""One module per ``margin-sim`` subcommand; each has ``register(subparsers)``."""
