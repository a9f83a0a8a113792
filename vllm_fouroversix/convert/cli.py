"""``fouroversix-convert``: command line front end of :func:`convert_checkpoint`.

Exit codes: 0 success; 1 ``verify`` found problems; 2 a user error (one line on
stderr, the traceback only with ``--debug``); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from vllm_fouroversix.checkpoint import ACTIVATION_MODES
from vllm_fouroversix.convert.errors import ConvertError

RULES = ("mse", "mae", "abs_max", "static_6", "static_4")
# Kept in sync with core.py (importing it here would pull in torch for --help).
_DEFAULT_SAMPLES = 16
_DEFAULT_SEQ_LEN = 256
_DEFAULT_SHARD = "5GB"

EPILOG = """\
examples:
  fouroversix-convert ./SmolLM2-135M-Instruct ./SmolLM2-135M-4o6
  fouroversix-convert ./model ./model-4o6 --dry-run
  fouroversix-convert ./model ./model-4o6 --ignore mlp.down_proj --ignore 'model.layers.0.*'
  fouroversix-convert ./model ./model-4o6 --activation-global-scale static --calibration-file text.txt
  fouroversix-convert verify ./model-4o6

docs: docs/converter.md
"""


def _convert_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="fouroversix-convert",
        description=(
            "Convert a bf16/fp16/fp32 Hugging Face checkpoint (safetensors) to 4/6 NVFP4\n"
            "(SPEC section 4) for serving with vLLM's 'fouroversix' quantization method.\n"
            "Use 'fouroversix-convert verify CKPT' to check an existing checkpoint."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("input", metavar="INPUT",
                    help="local model directory, or a model id already in the local Hugging Face cache (never downloads)")
    ap.add_argument("output", metavar="OUTPUT",
                    help="directory to create; refused if it exists and is not empty (see --force)")
    ap.add_argument("--weight-rule", choices=RULES, default="mse",
                    help="block-scale rule for weights (default: %(default)s)")
    ap.add_argument("--activation-rule", choices=RULES, default="mse",
                    help="block-scale rule recorded for activations at serving time (default: %(default)s)")
    ap.add_argument("--activation-global-scale", choices=ACTIVATION_MODES, default="token",
                    help="activation global scale at serving time: per token, per tensor, or static "
                         "calibrated input_scale (default: %(default)s)")
    ap.add_argument("--calibration-file", metavar="TEXT", default=None,
                    help="text file to calibrate static input_scale on; required with "
                         "--activation-global-scale static (default: none)")
    ap.add_argument("--calibration-samples", type=int, default=_DEFAULT_SAMPLES, metavar="N",
                    help="number of calibration windows (default: %(default)s)")
    ap.add_argument("--calibration-seq-len", type=int, default=_DEFAULT_SEQ_LEN, metavar="T",
                    help="tokens per calibration window (default: %(default)s)")
    ap.add_argument("--ignore", action="append", default=[], metavar="PATTERN",
                    help="keep matching modules in high precision, in addition to lm_head; a full name, "
                         "a dotted suffix (mlp.down_proj) or a glob (model.layers.0.*); repeatable "
                         "(default: only lm_head)")
    ap.add_argument("--device", default="auto",
                    help="where to quantize: auto (a CUDA GPU when there is one, else cpu), cpu, cuda, "
                         "cuda:N (default: %(default)s)")
    ap.add_argument("--max-shard-size", default=_DEFAULT_SHARD, metavar="SIZE",
                    help="largest output shard, e.g. 5GB, 500MB, 2GiB (default: %(default)s)")
    ap.add_argument("--force", action="store_true",
                    help="replace an existing non-empty OUTPUT (default: refuse)")
    ap.add_argument("--dry-run", action="store_true",
                    help="report what would be quantized and kept; write nothing (default: off)")
    ap.add_argument("--verify", action="store_true",
                    help="verify the result against SPEC before moving it into place (default: off)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar or summary (default: off)")
    ap.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")
    return ap


def _verify_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="fouroversix-convert verify",
        description="Check a checkpoint against SPEC section 4: names, dtypes, shapes, finite positive "
                    "scales, equal weight_scale_2 inside fused groups. Exit 1 with the list of problems.",
    )
    ap.add_argument("checkpoint", metavar="CKPT", help="converted model directory")
    ap.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")
    return ap


def _fail(msg: str) -> int:
    print(f"fouroversix-convert: error: {msg}", file=sys.stderr)
    return 2


def verify_main(argv: Sequence[str]) -> int:
    args = _verify_parser().parse_args(argv)
    from vllm_fouroversix.convert.verify import verify_checkpoint

    try:
        problems = verify_checkpoint(args.checkpoint)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001
        if args.debug:
            traceback.print_exc()
        return _fail(f"verify {args.checkpoint}: {e}")
    if problems:
        print(f"{args.checkpoint}: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(f"{args.checkpoint}: OK (follows SPEC section 4)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "verify":
        return verify_main(argv[1:])
    args = _convert_parser().parse_args(argv)
    try:
        from vllm_fouroversix.convert.core import convert_checkpoint

        say = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
        summary = convert_checkpoint(
            args.input,
            args.output,
            weight_rule=args.weight_rule,
            activation_rule=args.activation_rule,
            activation_global_scale=args.activation_global_scale,
            ignore=args.ignore,
            device=args.device,
            max_shard_size=args.max_shard_size,
            force=args.force,
            dry_run=args.dry_run,
            calibration_file=args.calibration_file,
            calibration_samples=args.calibration_samples,
            calibration_seq_len=args.calibration_seq_len,
            verify=args.verify,
            progress=not args.quiet,
            log=say,
        )
    except KeyboardInterrupt:
        print("fouroversix-convert: interrupted; OUTPUT was not written", file=sys.stderr)
        return 130
    except ConvertError as e:
        if args.debug:
            traceback.print_exc()
        return _fail(str(e))
    except Exception as e:  # noqa: BLE001 - one line unless --debug, as promised
        if args.debug:
            traceback.print_exc()
        return _fail(f"{type(e).__name__}: {e} (rerun with --debug for the traceback)")
    if not args.quiet:
        print(summary.format())
    elif args.dry_run:
        print(summary.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
