"""Backend adapters: one module per generation service behind one protocol."""
