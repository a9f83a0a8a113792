"""Kernels for the fast paths. No vLLM imports.

``triton_quantize``: the 4/6 activation quantizer and ``triton_gemm``: the NVFP4
weight GEMMs (W4A4 and W4A16) with M-based path selection, for Hopper/Ampere GPUs.
``cpu_quantize``: the converter's CPU quantizer (C, compiled on first use).
"""
