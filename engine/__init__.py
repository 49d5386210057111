"""The build engine: runs the step graph through backend adapters, keeps what it made."""
