"""A small code model on this machine: the GGUF files, the ``llama-server`` build, the server and the demo."""
