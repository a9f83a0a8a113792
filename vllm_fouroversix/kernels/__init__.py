"""Kernels for the fast paths. No vLLM imports.

``triton_quantize``: the 4/6 activation quantizer and ``triton_gemm``: the NVFP4
weight GEMMs (W4A4 and W4A16) with M-based path selection, for Hopper/Ampere GPUs;
``triton_prefill``: the GEMM after the weight is decoded; ``gluon_gemm`` (M 2..8,
mma.sync) and ``gluon_wgmma`` (M > 128, Hopper wgmma): Gluon kernels that
decode the weight into the MMA's operand registers; ``k64_order``: the K order of W4A4's
operand for the wgmma kernel. ``device``: what the kernels ask of the device.
``cpu_quantize``: the converter's CPU quantizer (C, compiled on first use).
"""
