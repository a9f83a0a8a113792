"""GPU kernels (Triton) for the Hopper/Ampere fast path. No vLLM imports.

``triton_quantize``: the 4/6 activation quantizer; ``triton_gemm``: the NVFP4
weight GEMMs (W4A4 and W4A16) with M-based path selection.
"""
