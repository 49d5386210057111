"""The front end: `.film` text → AST (grammar, parser, diagnostics, checks, formatter)."""
