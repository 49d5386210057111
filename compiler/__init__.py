"""AST → IR → step graph: resolution, prompts, content keys, plans."""
