"""What the tests compare against, in one place: plain-NumPy references and the inputs they share.

- ops: float64 RMSNorm, activations, softmax, RoPE and attention (kernels/{norm,activation,rope,attention}.py).
- sampling: llama.cpp's samplers, one function each, and the whole chain (service/sampling, kernels/sampling*.py).
- model: a float64 forward pass read straight from a GGUF file (service/model).
- matmul: y = x @ dequantize(W).T and the error bound the int8-activation kernels must meet.
- quant_blocks: GGML blocks for tests (real quantization or sane random bytes) and gguf's dequantization.
- cuda: host <-> device copies for the CUDA kernel tests (simulator or GPU).

They are written from the formats and formulas (gguf.quants, llama.cpp), not from the kernels,
so that a mistake the kernels make is unlikely to be repeated here.
"""
