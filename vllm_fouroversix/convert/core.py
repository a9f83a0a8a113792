"""``convert_checkpoint``: the public API behind ``fouroversix-convert``.

Data path: ``source`` reads headers -> ``plan`` decides from the architecture
-> (``calibrate`` for static activation scales) -> per unit, load the member
weights, take the group amax, ``nvfp4.quantize`` each member -> ``writer``
streams the tensors into shards inside a temporary directory that is renamed
to OUTPUT only when complete.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from vllm_fouroversix import nvfp4
from vllm_fouroversix.checkpoint import (
    ACTIVATION_MODES,
    INPUT_SCALE,
    WEIGHT,
    WEIGHT_SCALE,
    WEIGHT_SCALE_2,
    FourOverSixConfig,
)
from vllm_fouroversix.convert.errors import ConvertError
from vllm_fouroversix.convert.plan import Linear, Plan, make_plan
from vllm_fouroversix.convert.source import INDEX_NAME, WEIGHT_SUFFIXES, open_source
from vllm_fouroversix.convert.summary import ConvertSummary
from vllm_fouroversix.convert.writer import (
    DEFAULT_MAX_SHARD_SIZE,
    ShardedWriter,
    atomic_output_dir,
    check_output,
    parse_size,
)
from vllm_fouroversix.kernels import cpu_quantize

#: Static calibration defaults (documented in docs/converter.md).
DEFAULT_CALIBRATION_SAMPLES = 16
DEFAULT_CALIBRATION_SEQ_LEN = 256


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> the first CUDA GPU when there is one, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConvertError(f"--device {device!r} is not a device (auto, cpu, cuda, cuda:1)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConvertError(f"--device {device} asked for CUDA but no CUDA GPU is available")
    return dev


def _check_rule(flag: str, rule: str) -> nvfp4.ScaleRule:
    try:
        return nvfp4.ScaleRule(str(rule))
    except ValueError:
        names = ", ".join(r.value for r in nvfp4.ScaleRule)
        raise ConvertError(f"{flag} {rule!r} is not a scale rule; expected one of: {names}") from None


def _copy_side_files(src: Path, dst: Path) -> list[str]:
    """Tokenizer, generation config, chat template, README...: every top-level file
    that is not a weight file, an index or config.json (rewritten separately)."""
    copied = []
    for p in sorted(src.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.name == "config.json" or p.name.endswith(".index.json") or p.name == INDEX_NAME:
            continue
        if p.suffix in WEIGHT_SUFFIXES:
            continue
        shutil.copy2(p, dst / p.name)
        copied.append(p.name)
    return copied


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a conversion.

    Every full collection walks all objects torch and transformers hold (about
    0.15 s each here), and building the meta model and streaming hundreds of
    tensors set off several; a conversion makes no reference cycles worth
    collecting. Reference counting still frees every tensor at once.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@_cyclic_gc_paused()
def convert_checkpoint(
    input: str | os.PathLike,  # noqa: A002 - the CLI's name for it
    output: str | os.PathLike,
    *,
    weight_rule: str = "mse",
    activation_rule: str = "mse",
    activation_global_scale: str = "token",
    ignore: Sequence[str] = (),
    device: str | torch.device = "auto",
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    force: bool = False,
    dry_run: bool = False,
    calibration_file: str | os.PathLike | None = None,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    calibration_seq_len: int = DEFAULT_CALIBRATION_SEQ_LEN,
    verify: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> ConvertSummary:
    """Convert a bf16/fp16/fp32 Hugging Face checkpoint to the 4/6 NVFP4 format of SPEC section 4.

    ``input``: a local model directory or a model id in the local HF cache.
    ``output``: the directory to create (refused if non-empty unless ``force``).
    ``weight_rule``: scale rule for weights; ``activation_rule`` and
    ``activation_global_scale`` ("token", "tensor", "static") are recorded for
    serving; "static" also calibrates ``input_scale`` = amax / (M*S) of the
    activation rule over ``calibration_file`` (``calibration_samples`` windows of
    ``calibration_seq_len`` tokens). ``ignore``: module name patterns kept in high
    precision besides ``lm_head`` (see ``groups.matches``). ``dry_run`` plans and
    reports without writing. ``verify`` checks the result against SPEC before it
    is moved into place. Raises :class:`ConvertError` for user errors.
    """
    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    wrule = _check_rule("--weight-rule", weight_rule)
    arule = _check_rule("--activation-rule", activation_rule)
    if activation_global_scale not in ACTIVATION_MODES:
        raise ConvertError(
            f"--activation-global-scale {activation_global_scale!r} is not one of: {', '.join(ACTIVATION_MODES)}"
        )
    static = activation_global_scale == "static"
    if static:
        if calibration_file is None:
            raise ConvertError("--activation-global-scale static needs --calibration-file (a text file)")
        if not Path(calibration_file).is_file():
            raise ConvertError(f"--calibration-file {calibration_file} does not exist")
        if calibration_samples < 1 or calibration_seq_len < 1:
            raise ConvertError("--calibration-samples and --calibration-seq-len must be positive")
    elif calibration_file is not None:
        raise ConvertError("--calibration-file is only used with --activation-global-scale static")
    if isinstance(ignore, str):  # one pattern, not a sequence of characters
        ignore = (ignore,)
    dev = resolve_device(device)
    shard_bytes = parse_size(max_shard_size)
    out_path = Path(output).expanduser()

    source = open_source(input)
    warnings: list[str] = []
    if dry_run:
        if out_path.exists() and (out_path.is_file() or any(out_path.iterdir())) and not force:
            warnings.append(f"OUTPUT {out_path} exists and is not empty; the real run needs --force")
    else:
        check_output(out_path, source.root, force=force)
    plan = make_plan(source, ignore=tuple(ignore), static_inputs=static)
    for w in plan.warnings:
        say(f"warning: {w}")

    qcfg = FourOverSixConfig(
        weight_scale_rule=wrule,
        activation_scale_rule=arule,
        activation_global_scale=activation_global_scale,
        modules_to_not_convert=list(plan.modules_to_not_convert),
    )
    from vllm_fouroversix.convert.writer import assign_shards, shard_names

    summary = ConvertSummary(
        input=source.root,
        output=out_path.resolve(),
        architecture=plan.architecture,
        dry_run=dry_run,
        weight_rule=str(wrule),
        activation_rule=str(arule),
        activation_global_scale=activation_global_scale,
        quantized=list(plan.quantized),
        kept=dict(plan.kept),
        groups=len(plan.groups),
        tensors_in=len(source.tensors),
        tensors_out=len(plan.outputs),
        bytes_before=source.total_bytes,
        bytes_after=sum(o.nbytes for o in plan.outputs),
        shards=shard_names(len(assign_shards(plan.outputs, shard_bytes))),
        warnings=plan.warnings + warnings,
    )
    if dry_run:
        summary.seconds = time.perf_counter() - t0
        return summary

    if dev.type == "cpu":
        if cpu_quantize.needs_build():
            say("building the C quantizer (once per machine, a few seconds)")
        if not cpu_quantize.available():
            say(f"note: the C quantizer is unavailable ({cpu_quantize.unavailable_reason()}); "
                "quantizing with the slower PyTorch code (same result)")
    input_amax: dict[str, float] = {}
    if static:
        from vllm_fouroversix.convert.calibrate import calibrate_input_amax

        input_amax = calibrate_input_amax(
            plan,
            Path(calibration_file),  # type: ignore[arg-type]
            samples=calibration_samples,
            seq_len=calibration_seq_len,
            device=dev,
            progress=progress,
        )

    with atomic_output_dir(out_path) as tmp:
        writer = ShardedWriter(tmp, plan.outputs, shard_bytes)
        try:
            _write_tensors(plan, writer, summary, wrule, arule, input_amax, dev, progress)
        finally:
            writer.abort()
        summary.shards = writer.close()
        config = dict(source.config)
        config["quantization_config"] = qcfg.to_dict()
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        summary.copied_files = _copy_side_files(source.root, tmp)
        if verify:
            from vllm_fouroversix.convert.verify import verify_checkpoint

            summary.verify_problems = verify_checkpoint(tmp)
            if summary.verify_problems:
                raise ConvertError(
                    f"the converted checkpoint fails verification ({len(summary.verify_problems)} "
                    f"problems, first: {summary.verify_problems[0]}); nothing was written"
                )
    summary.seconds = time.perf_counter() - t0
    return summary


def _not_finite(name: str, file: Path) -> ConvertError:
    return ConvertError(f"tensor {name} in {file.name} contains NaN or Inf; refusing to convert it")


def _load(
    handles: dict[Path, object], stack: ExitStack, name: str, file: Path, check: bool = True
) -> torch.Tensor:
    """Read one tensor; with ``check``, refuse NaN/Inf (the C quantizer checks the
    weights it quantizes itself, in the same pass)."""
    from safetensors import safe_open

    h = handles.get(file)
    if h is None:
        h = handles[file] = stack.enter_context(safe_open(file, "pt", device="cpu"))
    t = h.get_tensor(name)  # type: ignore[attr-defined]
    if check and t.dtype.is_floating_point and t.numel():
        if cpu_quantize.available() and t.dtype in (torch.bfloat16, torch.float16, torch.float32):
            finite = cpu_quantize.amax_cpu(t) is not None
        else:
            finite = bool(torch.isfinite(t).all())
        if not finite:
            raise _not_finite(name, file)
    return t


@dataclass
class _Done:
    """A unit's output tensors (in plan order) and its statistics."""

    tensors: list[tuple[str, torch.Tensor]]
    in_bytes: int
    in_tensors: int
    errors: dict[str, float]
    blocks_nonzero: int = 0
    blocks_mapped_to_4: int = 0


def _quantize_unit(
    lins: list[Linear],
    ws: list[torch.Tensor],
    wrule: nvfp4.ScaleRule,
    dev: torch.device,
    input_scale: float | None,
) -> _Done:
    """Quantize one fused group (or one linear) with its shared amax; runs in a worker.

    On CPU the C quantizer (bit-exact with ``nvfp4.quantize``) does the work and
    the summary statistics in one pass; elsewhere ``nvfp4`` runs on ``dev``.
    """
    done = _Done([], sum(lin.weight.nbytes for lin in lins), len(lins), {})
    fast = dev.type == "cpu" and cpu_quantize.available()
    # One amax for the whole fused group (SPEC section 4): max|W| over its members.
    amax: torch.Tensor | float | None = None
    if fast:
        maxima = [cpu_quantize.amax_cpu(w) for w in ws]
        for lin, m in zip(lins, maxima):
            if m is None:
                raise _not_finite(lin.weight.name, lin.weight.file)
        amax = max(maxima) if len(ws) > 1 else maxima[0]  # type: ignore[type-var]
    elif len(ws) > 1:
        amax = torch.stack([w.abs().max().float() for w in ws]).max().to(dev)
    for lin, w in zip(lins, ws):
        if fast:
            q, st = cpu_quantize.quantize_cpu(w, wrule, amax=amax, stats=True)
            done.errors[lin.prefix] = st.relative_error
            done.blocks_nonzero += st.blocks_nonzero
            done.blocks_mapped_to_4 += st.blocks_mapped_to_4
        else:
            wd = w.to(dev)
            q = nvfp4.quantize(wd, wrule, amax=amax)
            done.errors[lin.prefix] = nvfp4.weight_error(wd, q)
            nz = q.scales.view(torch.uint8) != 0
            done.blocks_nonzero += int(nz.sum())
            if q.mapped_to_4 is not None:
                done.blocks_mapped_to_4 += int((q.mapped_to_4 & nz).sum())
        done.tensors += [
            (f"{lin.prefix}.{WEIGHT}", q.data.cpu()),
            (f"{lin.prefix}.{WEIGHT_SCALE}", q.scales.cpu()),
            (f"{lin.prefix}.{WEIGHT_SCALE_2}", q.global_scale.float().cpu().reshape(())),
        ]
        if input_scale is not None:
            done.tensors.append((f"{lin.prefix}.{INPUT_SCALE}", torch.tensor(input_scale, dtype=torch.float32)))
    return done


def _cpu_workers() -> int:
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(n, 16))


def _workers(dev: torch.device) -> int:
    """Quantization threads: one per core on CPU (one-thread workers); on a GPU a
    few, so one unit's copies and kernel launches overlap another's."""
    return _cpu_workers() if dev.type == "cpu" else _GPU_WORKERS


_GPU_WORKERS = 2
#: Input weight bytes in flight (loaded, being quantized or waiting to be written)
#: beyond which the converter waits for the oldest unit before loading more.
_INFLIGHT_BYTES = 2 << 30


def _write_tensors(
    plan: Plan,
    writer: ShardedWriter,
    summary: ConvertSummary,
    wrule: nvfp4.ScaleRule,
    arule: nvfp4.ScaleRule,
    input_amax: dict[str, float],
    dev: torch.device,
    progress: bool,
) -> None:
    """Load in plan order, quantize in workers, write in plan order.

    On CPU, units are quantized by a pool of one-thread workers (one per core;
    the C quantizer, or nvfp4's small elementwise ops, which scale badly with
    intra-op threads). Memory stays bounded: at most 2 units per worker and about
    ``_INFLIGHT_BYTES`` of input weights are in flight (the largest unit always fits).
    """
    from tqdm.auto import tqdm

    src = plan.source
    ms_act = nvfp4.rule_constants(arule).MS
    workers = _workers(dev)
    fast = dev.type == "cpu" and cpu_quantize.available()
    window = 2 * workers
    bar = tqdm(
        total=src.total_bytes, unit="B", unit_scale=True, desc="converting", disable=not progress,
        dynamic_ncols=True,
    )
    done_tensors = 0
    threads = torch.get_num_threads()
    pending: deque[Future[_Done] | _Done] = deque()
    sizes: deque[int] = deque()  # input bytes of each pending unit

    def flush_one() -> None:
        nonlocal done_tensors
        item = pending.popleft()
        sizes.popleft()
        done = item.result() if isinstance(item, Future) else item
        for name, t in done.tensors:
            writer.write(name, t)
        summary.weight_errors.update(done.errors)
        summary.blocks_nonzero += done.blocks_nonzero
        summary.blocks_mapped_to_4 += done.blocks_mapped_to_4
        done_tensors += done.in_tensors
        bar.update(done.in_bytes)
        bar.set_postfix(tensors=f"{done_tensors}/{len(src.tensors)}", refresh=False)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fouroversix-convert")
    try:
        if dev.type == "cpu":
            torch.set_num_threads(1)
        with ExitStack() as stack, bar:
            handles: dict[Path, object] = {}
            for unit in plan.units:
                if unit.kind == "copy":
                    info = src.tensors[unit.names[0]]
                    t = _load(handles, stack, info.name, info.file)
                    pending.append(_Done([(info.name, t)], info.nbytes, 1, {}))
                    sizes.append(info.nbytes)
                else:
                    lins = [plan.quantized[p] for p in unit.names]
                    ws = [
                        _load(handles, stack, lin.weight.name, lin.weight.file, check=not fast)
                        for lin in lins
                    ]
                    # input_scale = amax / (M*S) of the activation rule; serving uses amax = input_scale*M*S.
                    # Fused members share their input, so they share the group's largest amax.
                    ins = None
                    if plan.static_inputs:
                        ins = max(input_amax.get(p, 0.0) for p in unit.names) / ms_act
                    pending.append(pool.submit(_quantize_unit, lins, ws, wrule, dev, ins))
                    sizes.append(sum(lin.weight.nbytes for lin in lins))
                while len(pending) > window or (len(pending) > 1 and sum(sizes) > _INFLIGHT_BYTES):
                    flush_one()
            while pending:
                flush_one()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)
