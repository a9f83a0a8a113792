"""The 4/6 NVFP4 linear methods: parameters, loading checks, ``apply``.

``FourOverSixLinearMethod`` serves a checkpoint of SPEC section 4. It follows
the loading contract of vLLM's ModelOpt NVFP4 method (same tensor names and
layout): per layer (fused or not)

==================  =================  ===========================  =======================
parameter           dtype              shape on this rank           vLLM parameter class
==================  =================  ===========================  =======================
``weight``          uint8              [N/tp or N, K(/tp) / 2]      ModelWeightParameter
``weight_scale``    float8_e4m3fn      [N/tp or N, K(/tp) / 16]     ModelWeightParameter
``weight_scale_2``  float32            [number of fused shards]     PerTensorScaleParameter
``input_scale``     float32            [number of fused shards]     PerTensorScaleParameter
==================  =================  ===========================  =======================

(``input_scale`` only with ``activation_global_scale: static``), loaded through
the layer's own weight loaders (``weight_loader_v2``), so every vLLM linear
class and tensor parallelism shard them as they shard ModelOpt's. Each loader is
wrapped to check the checkpoint tensor first (dtype, shape, finite non-negative
scales) and to record which fused shards arrived; a violation is a
:class:`~vllm_fouroversix.checkpoint.CheckpointError` naming the checkpoint
tensor (``model.layers.0.self_attn.k_proj.weight_scale``).

``process_weights_after_loading`` turns the parameters into a
:class:`~vllm_fouroversix.backends.QuantizedWeight` (one global scale, or one
per output row when fused shards carry different ``weight_scale_2``), lets the
backend lay it out once, and replaces the parameters with the backend's
tensors: the weight stays FP4 in memory. ``apply`` runs the GEMM through the
custom op ``torch.ops.fouroversix.linear`` (``ops.py``).

``FourOverSixOnlineLinearMethod`` loads a high-precision weight and quantizes
it after loading (``--quantization fouroversix`` on a bf16 checkpoint), with
one amax per (fused) layer reduced across tensor-parallel ranks: the same
numbers ``fouroversix-convert`` writes.

Tensor parallelism and activation scales: a row-parallel layer sees K/tp
columns of each token. Per-token (and per-tensor) activation amax is over the
whole row, so with tp > 1 the local amaxes are all-gathered and reduced before
quantizing; TP=2 then computes exactly what TP=1 does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.nn import Parameter

from vllm.model_executor.layers.linear import (
    LinearMethodBase,
    register_weight_loader_v2_supported_method,
)
from vllm.model_executor.parameter import ModelWeightParameter, PerTensorScaleParameter
from vllm.model_executor.utils import set_weight_attrs

from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends import ActivationQuant, QuantizedWeight, select
from vllm_fouroversix.checkpoint import (
    INPUT_SCALE,
    WEIGHT,
    WEIGHT_SCALE,
    WEIGHT_SCALE_2,
    CheckpointError,
)
from vllm_fouroversix.nvfp4 import BLOCK_SIZE
from vllm_fouroversix.vllm import logger, ops

_QKV_INDEX = {"q": 0, "k": 1, "v": 2}
_ALL = "all"  # a tensor that covers every fused shard (fused on disk, or not fused)

_EXPECTED_DTYPE = {
    WEIGHT: torch.uint8,
    WEIGHT_SCALE: torch.float8_e4m3fn,
    WEIGHT_SCALE_2: torch.float32,
    INPUT_SCALE: torch.float32,
}


@dataclass(frozen=True)
class _Segment:
    """Output rows ``[r0, r1)`` computed by one op call, and its parameter names."""

    r0: int
    r1: int
    weight: str
    scales: str
    global_scale: str
    input_amax: str | None
    swizzled: bool


def _init_partition(
    prefix: str, layer: torch.nn.Module, k_part: int, out_sizes: list[int], k: int
) -> None:
    """Check K/tp and record the layer's partition sizes (both linear methods)."""
    _check_partition_k(prefix, layer, k_part, k)
    layer.logical_widths = list(out_sizes)
    layer.input_size_per_partition = k_part
    layer.output_size_per_partition = sum(out_sizes)


def _check_partition_k(prefix: str, layer: torch.nn.Module, k_part: int, k: int) -> None:
    if k_part % BLOCK_SIZE == 0:
        return
    tp = getattr(layer, "tp_size", 1)
    raise ValueError(
        f"fouroversix: {prefix} has K={k} input features split over tensor_parallel_size={tp} "
        f"into {k_part} per rank, which is not a multiple of the NVFP4 block size {BLOCK_SIZE}. "
        f"Use a tensor_parallel_size that divides K into multiples of {BLOCK_SIZE}."
    )


def _shard_index(shard_id: Any) -> Any:
    if shard_id is None:
        return _ALL
    if isinstance(shard_id, str):
        return _QKV_INDEX[shard_id]
    if isinstance(shard_id, tuple):
        return tuple(int(s) for s in shard_id)
    return int(shard_id)


def _expected_rows(layer: torch.nn.Module, shard_id: Any) -> int | None:
    """Rows N of the checkpoint tensor for ``shard_id`` (None when unknown)."""
    if shard_id is None:
        return int(layer.output_size)
    if isinstance(shard_id, str):
        heads = {
            "q": getattr(layer, "total_num_heads", None),
            "k": getattr(layer, "total_num_kv_heads", None),
            "v": getattr(layer, "total_num_kv_heads", None),
        }[shard_id]
        size = getattr(layer, "v_head_size" if shard_id == "v" else "head_size", None)
        return None if heads is None or size is None else int(heads * size)
    sizes = getattr(layer, "output_sizes", None)
    if sizes is None:
        return None
    if isinstance(shard_id, tuple):
        return int(sum(sizes[i] for i in shard_id))
    return int(sizes[int(shard_id)])


def _bad_scale_bytes(t: torch.Tensor) -> tuple[int, int]:
    """(non-finite count, negative count) of an float8_e4m3fn tensor."""
    b = t.contiguous().view(torch.uint8)
    mag = b & 0x7F
    nan = int((mag == 0x7F).sum())
    neg = int(((b & 0x80) != 0).logical_and_(mag != 0).logical_and_(mag != 0x7F).sum())
    return nan, neg


@register_weight_loader_v2_supported_method
class FourOverSixLinearMethod(LinearMethodBase):
    """Serves a linear layer of a 4/6 NVFP4 checkpoint (SPEC section 4)."""

    def __init__(self, quant_config: Any, prefix: str) -> None:
        self.quant_config = quant_config
        self.prefix = prefix
        spec = quant_config.spec
        self.act = ActivationQuant(rule=spec.activation_scale_rule, mode=spec.activation_global_scale)
        self.weight_rule = nvfp4.ScaleRule(spec.weight_scale_rule)
        self._loaded: dict[str, set[Any]] = {}

    # -- parameters ------------------------------------------------------------

    def create_weights(
        self,
        layer: torch.nn.Module,
        input_size_per_partition: int,
        output_partition_sizes: list[int],
        input_size: int,
        output_size: int,
        params_dtype: torch.dtype,
        **extra_weight_attrs: Any,
    ) -> None:
        _init_partition(self.prefix, layer, input_size_per_partition, output_partition_sizes, input_size)
        loader = extra_weight_attrs.get("weight_loader")
        n, k = layer.output_size_per_partition, input_size_per_partition
        shards = len(output_partition_sizes)

        def add(name: str, param: Parameter) -> None:
            layer.register_parameter(name, param)

        add(
            WEIGHT,
            ModelWeightParameter(
                data=torch.empty(n, k // 2, dtype=torch.uint8),
                input_dim=1,
                output_dim=0,
                weight_loader=self._checked_loader(layer, WEIGHT, loader),
            ),
        )
        add(
            WEIGHT_SCALE,
            ModelWeightParameter(
                data=torch.empty(n, k // BLOCK_SIZE, dtype=torch.float8_e4m3fn),
                input_dim=1,
                output_dim=0,
                weight_loader=self._checked_loader(layer, WEIGHT_SCALE, loader),
            ),
        )
        add(
            WEIGHT_SCALE_2,
            PerTensorScaleParameter(
                data=torch.zeros(shards, dtype=torch.float32),
                weight_loader=self._checked_loader(layer, WEIGHT_SCALE_2, loader),
            ),
        )
        if self.act.mode == "static":
            add(
                INPUT_SCALE,
                PerTensorScaleParameter(
                    data=torch.zeros(shards, dtype=torch.float32),
                    weight_loader=self._checked_loader(layer, INPUT_SCALE, loader),
                ),
            )

    def _ckpt_name(self, shard_id: Any, leaf: str) -> str:
        names = self.quant_config.shard_names(self.prefix)
        idx = _shard_index(shard_id)
        if idx == _ALL or len(names) == 1:
            base = self.prefix
        elif isinstance(idx, int) and idx < len(names):
            base = names[idx]
        else:
            base = f"{self.prefix}[shard {shard_id}]"
        return f"{base}.{leaf}"

    def _checked_loader(self, layer: torch.nn.Module, leaf: str, inner: Callable | None) -> Callable:
        """``inner`` behind SPEC checks on the checkpoint tensor, recording shards."""
        if inner is None:
            raise ValueError(f"fouroversix: {self.prefix} was created without a weight loader")
        method = self

        def fouroversix_loader(param: Parameter, loaded_weight: torch.Tensor, *args: Any, **kwargs: Any):
            shard_id = args[0] if args else kwargs.get("loaded_shard_id", kwargs.get("shard_id"))
            method._check_tensor(layer, leaf, loaded_weight, shard_id)
            out = inner(param, loaded_weight, *args, **kwargs)
            idx = _shard_index(shard_id)
            seen = method._loaded.setdefault(leaf, set())
            if isinstance(idx, tuple):
                seen.update(idx)
            else:
                seen.add(idx)
            return out

        return fouroversix_loader

    def _check_tensor(self, layer: torch.nn.Module, leaf: str, t: torch.Tensor, shard_id: Any) -> None:
        name = self._ckpt_name(shard_id, leaf)
        want = _EXPECTED_DTYPE[leaf]
        if t.dtype != want:
            hint = ""
            if leaf == WEIGHT and t.is_floating_point():
                hint = (
                    " (an unquantized weight: is this layer missing from modules_to_not_convert, "
                    "or is the checkpoint not converted?)"
                )
            raise CheckpointError(
                f"fouroversix: checkpoint tensor {name} has dtype {t.dtype}, expected {want}{hint}"
            )
        k = int(layer.input_size)
        if leaf in (WEIGHT, WEIGHT_SCALE):
            rows = _expected_rows(layer, shard_id)
            cols = k // 2 if leaf == WEIGHT else k // BLOCK_SIZE
            if t.dim() != 2 or t.shape[1] != cols or (rows is not None and t.shape[0] != rows):
                exp = f"[{rows if rows is not None else 'N'}, {cols}]"
                raise CheckpointError(
                    f"fouroversix: checkpoint tensor {name} has shape {list(t.shape)}, expected {exp} "
                    f"(K={k} input features{', packed two per byte' if leaf == WEIGHT else ', one scale per 16'})"
                )
            if leaf == WEIGHT_SCALE:
                nan, neg = _bad_scale_bytes(t)
                if nan or neg:
                    what = f"{nan} NaN" if nan else f"{neg} negative"
                    raise CheckpointError(
                        f"fouroversix: checkpoint tensor {name} holds {what} block scale(s); "
                        "block scales must be finite and non-negative"
                    )
        else:
            if t.numel() != 1 or t.dim() > 1:
                raise CheckpointError(
                    f"fouroversix: checkpoint tensor {name} has shape {list(t.shape)}, expected [] (a scalar)"
                )
            v = float(t.reshape(()).item())
            if not (v == v and abs(v) != float("inf")) or v < 0:
                raise CheckpointError(
                    f"fouroversix: checkpoint tensor {name} is {v}; a global scale must be finite and non-negative"
                )

    # -- after loading ---------------------------------------------------------

    def _check_complete(self, layer: torch.nn.Module) -> None:
        shards = len(layer.logical_widths)
        leaves = [WEIGHT, WEIGHT_SCALE, WEIGHT_SCALE_2] + ([INPUT_SCALE] if self.act.mode == "static" else [])
        missing = []
        for leaf in leaves:
            seen = self._loaded.get(leaf, set())
            if _ALL in seen:
                continue
            if shards == 1 and seen:
                continue
            missing += [self._ckpt_name(i if shards > 1 else None, leaf) for i in range(shards) if i not in seen]
        if missing:
            raise CheckpointError(
                f"fouroversix: the checkpoint lacks {', '.join(missing)} (needed by the quantized "
                f"layer {self.prefix}; activation_global_scale is {self.act.mode!r})"
            )

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
        if getattr(layer, "_fouroversix_ready", False):
            return
        self._check_complete(layer)
        widths = list(layer.logical_widths)
        ws2 = layer.weight_scale_2.data.float().reshape(-1)
        data = layer.weight.data
        scales = layer.weight_scale.data
        n, k = data.shape[0], data.shape[1] * 2
        ms = nvfp4.rule_constants(self.act.rule).MS
        in_amax = None
        if self.act.mode == "static":
            in_amax = layer.input_scale.data.float().reshape(-1) * ms
        split = in_amax is not None and bool((in_amax != in_amax[0]).any())
        if split:
            # Fused shards calibrated with different static input scales: each shard
            # quantizes the (shared) input with its own amax, as the unfused model would.
            logger.info(
                "fouroversix: %s: fused shards have different input_scale; running one GEMM per shard",
                self.prefix,
            )
            parts, r0 = [], 0
            for i, w in enumerate(widths):
                qw = QuantizedWeight(
                    data=data[r0 : r0 + w].contiguous(),
                    scales=scales[r0 : r0 + w].contiguous(),
                    global_scale=ws2[i].reshape(()).clone(),
                    n=w,
                    k=k,
                )
                parts.append((r0, r0 + w, qw, in_amax[i].reshape(()).clone()))
                r0 += w
        else:
            if bool((ws2 == ws2[0]).all()):
                g = ws2[0].reshape(()).clone()
            else:
                # Fused shards with different weight_scale_2 (not written by our
                # converter): one global scale per output row keeps every shard exact.
                logger.info(
                    "fouroversix: %s: fused shards have different weight_scale_2 %s; "
                    "using per-row global scales",
                    self.prefix,
                    [f"{v:.3g}" for v in ws2.tolist()],
                )
                g = torch.repeat_interleave(ws2, torch.tensor(widths, device=ws2.device))
            qw = QuantizedWeight(data=data, scales=scales, global_scale=g, n=n, k=k)
            parts = [(0, n, qw, None if in_amax is None else in_amax[0].reshape(()).clone())]
        for name in (WEIGHT_SCALE_2, INPUT_SCALE):
            if hasattr(layer, name):
                delattr(layer, name)
        finish_layer(self, layer, parts)

    # -- forward ----------------------------------------------------------------

    def apply(self, layer: torch.nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return apply_fouroversix(layer, x, bias, self.act)


@register_weight_loader_v2_supported_method
class FourOverSixOnlineLinearMethod(FourOverSixLinearMethod):
    """Quantizes a high-precision checkpoint's linear layer on load (online)."""

    def create_weights(
        self,
        layer: torch.nn.Module,
        input_size_per_partition: int,
        output_partition_sizes: list[int],
        input_size: int,
        output_size: int,
        params_dtype: torch.dtype,
        **extra_weight_attrs: Any,
    ) -> None:
        _init_partition(self.prefix, layer, input_size_per_partition, output_partition_sizes, input_size)
        loader = extra_weight_attrs.pop("weight_loader")
        weight = ModelWeightParameter(
            data=torch.empty(layer.output_size_per_partition, input_size_per_partition, dtype=params_dtype),
            input_dim=1,
            output_dim=0,
            weight_loader=loader,
        )
        layer.register_parameter(WEIGHT, weight)
        set_weight_attrs(weight, extra_weight_attrs)

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
        if getattr(layer, "_fouroversix_ready", False):
            return
        w = layer.weight.data
        lo, hi = w.aminmax()
        amax = torch.maximum(lo.abs(), hi.abs()).float().reshape(1)
        if _is_tp_sharded(layer):
            # The converter's amax is over the whole (fused) weight: reduce it over
            # the ranks so every shard quantizes with the same global scale.
            from vllm.distributed import get_tp_group

            torch.distributed.all_reduce(amax, op=torch.distributed.ReduceOp.MAX, group=get_tp_group().device_group)
        t = nvfp4.quantize(w, self.weight_rule, amax=amax.reshape(()))
        qw = QuantizedWeight.from_nvfp4(t)
        delattr(layer, WEIGHT)
        del w, t
        finish_layer(self, layer, [(0, qw.n, qw, None)])


def _is_tp_sharded(layer: torch.nn.Module) -> bool:
    if getattr(layer, "tp_size", 1) == 1:
        return False
    return (
        layer.input_size != layer.input_size_per_partition
        or layer.output_size != layer.output_size_per_partition
    )


def finish_layer(
    method: FourOverSixLinearMethod,
    layer: torch.nn.Module,
    parts: list[tuple[int, int, QuantizedWeight, torch.Tensor | None]],
) -> None:
    """Hand each part to the backend once; its tensors become the layer's parameters."""
    device = parts[0][2].data.device
    backend = select(device)
    if backend.name == "reference" and device.type == "cuda":
        _warn_once(
            "fouroversix: the reference backend runs on CUDA here; it synchronizes with the host "
            "while quantizing activations, so CUDA graphs cannot capture it: serve with "
            "--enforce-eager (or use a GPU the triton/cutedsl backends support)"
        )
    ops.backend_instance(backend.name, backend)
    ops.register_op()
    segments = []
    elems = nbytes = 0
    for name in (WEIGHT, WEIGHT_SCALE):
        if hasattr(layer, name):
            delattr(layer, name)
    for i, (r0, r1, qw, amax) in enumerate(parts):
        pw = backend.prepare_weight(qw)
        # vLLM finishes layers inside set_default_torch_dtype(model dtype).
        backend.warmup_layer(pw, method.act, torch.get_default_dtype(), getattr(layer, "bias", None) is not None)
        ops.register_weight(pw)
        sfx = "" if i == 0 else f"_s{i}"
        names = (f"{WEIGHT}{sfx}", f"{WEIGHT_SCALE}{sfx}", f"weight_global_scale{sfx}")
        for nm, tensor in zip(names, (pw.data, pw.scales, pw.global_scale)):
            layer.register_parameter(nm, Parameter(tensor, requires_grad=False))
        amax_name = None
        if amax is not None:
            amax_name = f"input_amax{sfx}"
            layer.register_parameter(amax_name, Parameter(amax.to(device), requires_grad=False))
        segments.append(_Segment(r0, r1, *names, amax_name, pw.scales_swizzled))
        elems += pw.n * pw.k
        nbytes += sum(t.numel() * t.element_size() for t in (pw.data, pw.scales, pw.global_scale))
    layer._fouroversix_segments = tuple(segments)
    layer._fouroversix_backend = backend.name
    layer._fouroversix_k = parts[0][2].k
    k_sharded = getattr(layer, "tp_size", 1) > 1 and layer.input_size_per_partition != layer.input_size
    layer._fouroversix_reduce_amax = k_sharded and backend.accepts_amax_override
    if k_sharded and not backend.accepts_amax_override and method.act.mode != "static":
        _warn_once(
            f"fouroversix: the {backend.name} backend computes activation amax from the K/tp "
            "columns each tensor-parallel rank holds; row-parallel layers differ slightly from tp=1"
        )
    layer._fouroversix_ready = True
    method.quant_config.layer_processed(backend.name, elems, nbytes)


_warned: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        logger.warning(msg)


def _tp_amax(x2: torch.Tensor, mode: str) -> torch.Tensor:
    """The activation amax over the full (unsharded) K: all-gather and max over TP ranks."""
    from vllm.distributed import tensor_model_parallel_all_gather

    if mode == "token":
        am = x2.abs().amax(-1).float().unsqueeze(0)  # [1, M]
        return tensor_model_parallel_all_gather(am, dim=0).amax(0)  # [M]
    am = x2.abs().amax().float().reshape(1, 1)
    return tensor_model_parallel_all_gather(am, dim=0).amax()


def apply_fouroversix(
    layer: torch.nn.Module, x: torch.Tensor, bias: torch.Tensor | None, act: ActivationQuant
) -> torch.Tensor:
    k = layer._fouroversix_k
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    shared_amax = None
    if layer._fouroversix_reduce_amax and act.mode in ("token", "tensor") and x2.shape[0] > 0:
        shared_amax = _tp_amax(x2, act.mode)
    segments = layer._fouroversix_segments
    outs = []
    for seg in segments:
        b = bias if bias is None or len(segments) == 1 else bias[seg.r0 : seg.r1]
        amax = getattr(layer, seg.input_amax) if seg.input_amax is not None else shared_amax
        outs.append(
            torch.ops.fouroversix.linear(
                x2,
                getattr(layer, seg.weight),
                getattr(layer, seg.scales),
                getattr(layer, seg.global_scale),
                b,
                amax,
                seg.r1 - seg.r0,
                k,
                seg.swizzled,
                act.rule.value,
                act.mode,
                layer._fouroversix_backend,
            )
        )
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
    return out.reshape(*lead, out.shape[-1])
