"""The KV cache type flags (-ctk / -ctv), as llama-server has them: Effect.WORKS.

llama.cpp's kv_cache_types (common/arg.cpp) in its order; any other name is its error,
"Unsupported cache type: NAME". A quantized V cache needs flash attention (service.cli
applies llama.cpp's rule: -fa off refuses it, -fa auto turns it on); a block type that does not
divide the model's head size is refused at load (service.model.model, llama.cpp's message).
"""

from __future__ import annotations

# kernels.kv_types.NAMES, from a module without NumPy or Numba: the router reads these tables too
from service.args_conv import KV_CACHE_TYPES as NAMES
from service.args_spec import Flag, value

_TYPES = ", ".join(NAMES)


def cache_type(s: str) -> str:
    if s not in NAMES:
        raise ValueError(f"Unsupported cache type: {s}")
    return s


CACHE_FLAGS: tuple[Flag, ...] = (
    value("cache_type_k", "-ctk --cache-type-k", "LLAMA_ARG_CACHE_TYPE_K", "KV cache data type for K; allowed values: "
          + _TYPES, cache_type, "TYPE"),
    value("cache_type_v", "-ctv --cache-type-v", "LLAMA_ARG_CACHE_TYPE_V", "KV cache data type for V; allowed values: "
          + _TYPES + " (a quantized type needs flash attention: not with -fa off)", cache_type, "TYPE"),
)
