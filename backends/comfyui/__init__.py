"""The ComfyUI adapter: a user's API-format workflow, run on one or several ComfyUI servers."""
