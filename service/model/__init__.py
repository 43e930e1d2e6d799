"""The model runtime: GGUF file -> config, packed weights, KV cache, forward pass."""
