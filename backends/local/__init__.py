"""The built-in `local` backend: an offline, deterministic animatic (stills, camera moves, timing, subtitles)."""
