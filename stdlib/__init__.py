"""The standard library: preset modules (`use std.camera`) and prompt templates."""
