"""filmc: a compiler and build system for films made with generative AI."""

__version__ = "0.1.0"
