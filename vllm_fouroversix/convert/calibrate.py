"""Static activation scales: run the original model over calibration text.

With ``activation_global_scale: "static"`` every quantized linear P gets
``P.input_scale = amax / (M*S)``, where amax is the largest |x| seen at P's input
over the calibration windows and M*S = ``nvfp4.rule_constants(activation_rule).MS``
(1536 for the 4/6 rules, 2688 for ``static_6``, 1792 for ``static_4``). Serving
recovers the activation amax as ``input_scale * M * S`` and passes it to the
quantizer (``nvfp4.quantize(x, rule, amax=...)``); activations above it saturate.

Inputs are observed by intercepting ``F.linear`` with a ``TorchFunctionMode`` and
recognising the weight by its data pointer: this sees nn.Linear layers and the
per-expert slices of transformers' fused experts parameters alike, with no
per-architecture code. This step loads the whole model (unlike the streaming
conversion), on the conversion device.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from vllm_fouroversix.convert.errors import ConvertError
from vllm_fouroversix.convert.plan import Plan


class _InputAmax(TorchFunctionMode):
    """Records max|input| of every F.linear whose weight pointer is known."""

    def __init__(self, by_ptr: dict[int, list[str]]) -> None:
        super().__init__()
        self.by_ptr = by_ptr
        self.amax: dict[str, float] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func is torch.nn.functional.linear:
            x = args[0] if args else kwargs.get("input")
            w = args[1] if len(args) > 1 else kwargs.get("weight")
            names = self.by_ptr.get(w.data_ptr()) if isinstance(w, torch.Tensor) else None
            if names and isinstance(x, torch.Tensor) and x.numel():
                a = float(x.detach().abs().max())
                for n in names:
                    if a > self.amax.get(n, 0.0):
                        self.amax[n] = a
        return func(*args, **kwargs)


def _windows(tokenizer, text: str, samples: int, seq_len: int) -> list[list[int]]:  # noqa: ANN001
    # Tokenize only what the windows need (about 8 characters a token is generous).
    ids = tokenizer(text[: samples * seq_len * 8], add_special_tokens=False)["input_ids"]
    bos = getattr(tokenizer, "bos_token_id", None)
    body = seq_len - 1 if bos is not None else seq_len
    out = []
    for i in range(samples):
        chunk = ids[i * body : (i + 1) * body]
        if not chunk:
            break
        out.append(([bos] if bos is not None else []) + list(chunk))
    return out


def calibrate_input_amax(
    plan: Plan,
    calibration_file: Path,
    *,
    samples: int,
    seq_len: int,
    device: torch.device,
    progress: bool = True,
) -> dict[str, float]:
    """Largest |input| of every quantized linear of ``plan`` (checkpoint prefix -> amax)."""
    import transformers
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = plan.source.root
    text = Path(calibration_file).read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise ConvertError(f"--calibration-file {calibration_file} is empty")
    try:
        tokenizer = AutoTokenizer.from_pretrained(root)
    except Exception as e:  # noqa: BLE001
        raise ConvertError(f"static calibration needs the tokenizer of {root}: {e}") from None
    windows = _windows(tokenizer, text, samples, seq_len)
    if not windows:
        raise ConvertError(f"--calibration-file {calibration_file} yields no tokens")

    cls = getattr(transformers, plan.architecture, None) or AutoModelForCausalLM
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        # eager experts: one F.linear per expert slice, which is what we intercept.
        model = cls.from_pretrained(root, dtype="auto", experts_implementation="eager")
    except TypeError:
        model = cls.from_pretrained(root, dtype="auto")
    except Exception as e:  # noqa: BLE001
        raise ConvertError(f"static calibration cannot load {root} with transformers: {e}") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    model.to(device).eval()

    by_ptr: dict[int, list[str]] = {}
    for prefix, lin in plan.quantized.items():
        if lin.expert is None:
            w = model.get_submodule(lin.module).weight
            ptr = w.data_ptr()
        else:
            p = model.get_parameter(lin.module)
            ptr = p.data_ptr() + lin.expert * p.stride(0) * p.element_size()
        by_ptr.setdefault(ptr, []).append(prefix)

    rec = _InputAmax(by_ptr)
    with torch.no_grad(), rec:
        for ids in tqdm(windows, desc="calibrating", unit="window", disable=not progress):
            model(input_ids=torch.tensor([ids], device=device), use_cache=False)
    del model

    amax = dict(rec.amax)
    missing = [p for p in plan.quantized if p not in amax]
    for p in missing:
        # Experts no calibration token was routed to: borrow the largest amax seen at the
        # same projection of the other experts (same input distribution, same layer).
        module = plan.quantized[p].module
        peers = [amax[q] for q, lin in plan.quantized.items() if lin.module == module and q in amax]
        if not peers:
            raise ConvertError(
                f"static calibration never saw an input reach {p}; use more or longer calibration text"
            )
        amax[p] = max(peers)
    return amax
