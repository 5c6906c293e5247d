"""CLI subcommands, one module per concern; ``cli.main`` registers them."""
