"""CLI subcommands, one module per concern; ``calendly_brevo.cli`` registers them."""
