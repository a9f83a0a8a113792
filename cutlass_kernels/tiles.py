"""Tile and cluster selection by problem shape (pure Python, no DSL import).

The shipped GEMM configurations and the rule that picks one for (M, N, K).
The rule is a plain heuristic, reasoned from the B200 numbers of
``tools/roofline_blackwell.py`` (148 SMs, 9 PFLOP/s dense NVFP4, 8 TB/s):

- decode (M <= 128): one 128-row MMA tile covers all tokens, so the GEMM
  streams the weight once and is memory bound; what matters is how many SMs
  stream it. A 64-wide N tile doubles the CTA count over 128 and is chosen
  while N/128 tiles would leave SMs idle.
- small prefill (M <= 256): 128 x 128, no cluster.
- prefill (M > 256): the 2-CTA 256 x 128 tile (a CTA pair shares each W tile
  through the 2-CTA MMA), cluster 2 x 1.
- large prefill (M >= 2048, N >= 4096): cluster 2 x 2 adds multicast of the A
  tile across the two N columns of the cluster, halving A's L2 -> SM traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

B200_SMS = 148


@dataclass(frozen=True)
class GemmConfig:
    name: str
    tile_mn: tuple[int, int]
    cluster_mn: tuple[int, int]

    @property
    def cluster_size(self) -> int:
        return self.cluster_mn[0] * self.cluster_mn[1]

    @property
    def cta_tile_mn(self) -> tuple[int, int]:
        """Output rows x columns computed by one CTA (2-CTA tiles split M)."""
        tm, tn = self.tile_mn
        return (tm // 2, tn) if tm == 256 else (tm, tn)

    def max_active_clusters(self, num_sms: int = B200_SMS) -> int:
        """Persistent grid size in clusters: one CTA per SM (occupancy 1)."""
        return num_sms // self.cluster_size


DECODE = GemmConfig("decode", (128, 64), (1, 1))
SMALL = GemmConfig("small", (128, 128), (1, 1))
PREFILL = GemmConfig("prefill", (256, 128), (2, 1))
PREFILL_LARGE = GemmConfig("prefill_large", (256, 128), (2, 2))

#: Every configuration the package ships (and CI compiles).
SHIPPED = (DECODE, SMALL, PREFILL, PREFILL_LARGE)


def select_config(m: int, n: int, k: int, num_sms: int = B200_SMS) -> GemmConfig:
    """The configuration for an [m, k] x [n, k]^T GEMM."""
    if m < 1 or n < 1 or k < 1:
        raise ValueError(f"empty GEMM {m}x{n}x{k}")
    if m <= 128:
        return DECODE if -(-n // 128) < num_sms else SMALL
    if m <= 256:
        return SMALL
    if m >= 2048 and n >= 4096:
        return PREFILL_LARGE
    return PREFILL


#: One M from each range in which :func:`select_config` is constant for any N:
#: (<=128), (129-256), (257-2047), (>=2048). Warming these up at start-up compiles
#: every configuration serving can pick, so nothing compiles on the serving path.
WARMUP_M = (1, 256, 512, 4096)
