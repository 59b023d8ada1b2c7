"""Predicted seconds per denoising step of Wan2.2 T2V-A14B on H100 GPUs, for each parallel layout.

    python bench/predict_step.py [--markdown] [--size 1280*720] [--frames 81] [--mfu 0.52]
                                 [--link-gbs 450] [--link-efficiency 0.75] [--latency-us 25]

A prediction from FLOP counts and stated bandwidths, not a measurement: no GPU is needed (nor
torch). One step runs one A14B expert (both experts have the same shapes) twice, for the
conditional and the unconditional pass of classifier-free guidance. Per layout
(world = cfg_degree x ulysses_degree):

- compute: the matmul FLOPs of the passes a rank runs, split over the ranks of its pass (Ulysses
  splits the tokens for the projections and the FFN, and the heads for attention), divided by the
  dense bf16 peak times an MFU;
- communication: what a rank sends per step (Ulysses: 4 all-to-alls per block and pass, each of
  which sends (u-1)/u of the rank's (L/u) x d activations; the gather of the output; with cfg 2
  the swap of the two halves' noise predictions), over the NVLink bandwidth times an efficiency,
  plus a fixed latency per collective. diffusers' Ulysses, which the project runs, does not overlap
  an all-to-all with compute, so all of it is counted.

The default MFU, 0.52, is calibrated on the published Wan2.2 totals (one fit of MFU and a fixed
time per job from the 1- and 8-GPU figures; the 4-GPU figure is left out to check the fit), which
the plain output prints at the end.
`--markdown` prints the tables docs/performance.md embeds.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

# Wan2.2-T2V-A14B expert (the high-noise and the low-noise expert have the same architecture).
HEADS = 40
HEAD_DIM = 128
DIM = HEADS * HEAD_DIM  # 5120
BLOCKS = 40
FFN = 13824
TEXT_TOKENS = 512  # umT5 context, padded to 512 tokens
TEXT_DIM = 4096  # projected to DIM by the text embedder (two linears)
Z_DIM = 16  # latent channels
PATCH = (1, 2, 2)  # (frames, height, width) of a transformer token, in latent cells
VAE_STRIDE = (4, 8, 8)  # (frames, height, width) of a latent cell, in pixels
BF16 = 2  # bytes

STEPS = 40  # the release's default sample_steps for t2v-A14B
PASSES = 2  # classifier-free guidance on: conditional and unconditional pass per step

# H100 SXM.
PEAK_FLOPS = 989e12  # dense bf16 tensor-core peak
NVLINK_BYTES_S = 450e9  # NVLink 4, per direction per GPU (18 links x 25 GB/s)

# Published figures (H100). Official Wan2.2 README, T2V-A14B 1280*720, 81 frames, 40 steps: total
# seconds per job, text encoding and VAE decode included. Multi-GPU runs: --ulysses_size 4/8
# --dit_fsdp --t5_fsdp (both CFG passes on every rank, one after the other); one GPU:
# --offload_model True --convert_model_dtype.
OFFICIAL_TOTAL_S = {1: 1041.5, 4: 288.7, 8: 155.1}
# LightX2V's table: Wan2.1-I2V-14B-480P, 40 steps, CFG: seconds per step.
LIGHTX2V_S_PER_STEP = (("diffusers", 1, 9.77), ("xDiT", 8, 2.70), ("SGL-Diffusion", 8, 1.19), ("LightX2V", 8, 0.75))


@dataclass(frozen=True)
class Video:
    width: int
    height: int
    frames: int

    @property
    def latent(self) -> tuple[int, int, int]:
        """(frames, height, width) of the latent: the first frame alone, then 4 frames a cell."""
        ft, fh, fw = VAE_STRIDE
        return (self.frames - 1) // ft + 1, self.height // fh, self.width // fw

    @property
    def tokens(self) -> int:
        (f, h, w), (pt, ph, pw) = self.latent, PATCH
        return (f // pt) * (h // ph) * (w // pw)


@dataclass(frozen=True)
class Layout:
    name: str
    cfg: int  # 1: every rank runs both passes; 2: half the ranks the conditional, half the unconditional
    ulysses: int  # ranks one pass's tokens are split over

    @property
    def gpus(self) -> int:
        return self.cfg * self.ulysses

    @property
    def passes_per_rank(self) -> int:
        return PASSES // self.cfg


LAYOUTS = (
    Layout("one GPU, both passes", 1, 1),
    Layout("Ulysses 4", 1, 4),
    Layout("cfg 2 x Ulysses 2", 2, 2),
    Layout("Ulysses 8", 1, 8),
    Layout("cfg 2 x Ulysses 4 (8-GPU preset)", 2, 4),
)


@dataclass(frozen=True)
class Hardware:
    mfu: float  # achieved fraction of PEAK_FLOPS over a whole forward (kernels, norms, RoPE, launches)
    link_efficiency: float  # achieved fraction of the link's bandwidth by an NCCL all-to-all / all-gather
    latency_s: float  # fixed cost of one collective (launch, synchronisation)
    link_peak_bytes_s: float = NVLINK_BYTES_S

    @property
    def flops_s(self) -> float:
        return PEAK_FLOPS * self.mfu

    @property
    def link_bytes_s(self) -> float:
        return self.link_peak_bytes_s * self.link_efficiency


def forward_flops(tokens: int, ranks: int = 1) -> float:
    """Matmul FLOPs of one forward of an expert on one of `ranks` ranks that share its tokens
    (2 FLOPs per multiply-add). The parts that work per token, or per head for attention, split over
    the ranks; the text side (text embedder, cross-attention keys and values) and the patch
    embedding (which runs before the tokens are split) are computed whole on every rank."""
    n, m, d = tokens, TEXT_TOKENS, DIM
    split = (
        4 * 2 * n * d * d  # self-attention q, k, v, o projections
        + 4 * n * n * d  # self-attention scores (QK^T) and values (PV), all heads
        + 2 * 2 * n * d * d  # cross-attention q and o projections
        + 4 * n * m * d  # cross-attention scores and values over the text
        + 2 * 2 * n * d * FFN  # FFN up and down
    )
    whole = 2 * 2 * m * d * d  # cross-attention k and v over the text
    embed = 2 * m * (TEXT_DIM * d + d * d) + 2 * n * d * Z_DIM * PATCH[0] * PATCH[1] * PATCH[2]
    head = 2 * n * d * Z_DIM * PATCH[0] * PATCH[1] * PATCH[2]  # proj_out, on the rank's own tokens
    return BLOCKS * (split / ranks + whole) + embed + head / ranks


def attention_share(tokens: int) -> float:
    """The share of a forward's FLOPs in self-attention scores and values."""
    return BLOCKS * 4 * tokens * tokens * DIM / forward_flops(tokens)


def block_params() -> int:
    """Parameters of the 40 blocks of one expert (what FSDP gathers per forward)."""
    d = DIM
    attn = 4 * (d * d + d) + 2 * d  # q, k, v, o with biases; RMSNorm of q and k
    return BLOCKS * (2 * attn + 2 * d * FFN + FFN + d + 2 * d + 6 * d)  # + FFN, norm2, modulation table


@dataclass(frozen=True)
class Comm:
    all_to_all_bytes: float  # sent per rank per step (an all-to-all receives as much)
    gather_bytes: float  # the output gather after the last block
    swap_bytes: float  # cfg 2: the noise prediction exchanged with the other half
    collectives: int

    @property
    def bytes(self) -> float:
        return self.all_to_all_bytes + self.gather_bytes + self.swap_bytes


def step_comm(video: Video, layout: Layout) -> Comm:
    """What one rank sends per step; the formulas of docs/performance.md ("Communication per step")."""
    u, passes = layout.ulysses, layout.passes_per_rank
    activation = video.tokens * DIM * BF16  # L x d in bf16: q, k, v or the attention output of all tokens
    prediction = video.tokens * Z_DIM * PATCH[0] * PATCH[1] * PATCH[2] * BF16  # = the latent's size
    if u == 1:
        a2a = gather = 0.0
        collectives = 0
    else:
        # 4 all-to-alls per block and pass of the rank's L/u tokens, (u-1)/u of which leave the rank.
        a2a = passes * BLOCKS * 4 * (u - 1) / u * activation / u
        gather = passes * (u - 1) / u * prediction
        collectives = passes * (BLOCKS * 4 + 1)
    swap = prediction if layout.cfg == 2 else 0.0
    return Comm(a2a, gather, swap, collectives + (1 if layout.cfg == 2 else 0))


def fsdp_gather_bytes(layout: Layout) -> float:
    """With `fsdp`: the blocks' parameters gathered per step by one rank, over the ranks of its pass."""
    u = layout.ulysses
    return 0.0 if u == 1 else layout.passes_per_rank * (u - 1) / u * block_params() * BF16


@dataclass(frozen=True)
class Row:
    layout: Layout
    compute_s: float
    comm: Comm
    comm_s: float
    fsdp_s: float  # the FSDP gathers' time per step if none of it were hidden behind compute

    @property
    def step_s(self) -> float:
        return self.compute_s + self.comm_s


def predict(video: Video, layout: Layout, hw: Hardware) -> Row:
    flops = layout.passes_per_rank * forward_flops(video.tokens, layout.ulysses)
    comm = step_comm(video, layout)
    comm_s = comm.bytes / hw.link_bytes_s + comm.collectives * hw.latency_s  # not overlapped: all exposed
    return Row(layout, flops / hw.flops_s, comm, comm_s, fsdp_gather_bytes(layout) / hw.link_bytes_s)


@dataclass(frozen=True)
class Calibration:
    mfu: float
    fixed_s: float  # per job: text encoding, VAE decode, the 1-GPU run's expert offloading
    held_out_4gpu_s: float  # the fit's total for 4 GPUs, against the published 288.7 s


def calibrate(hw: Hardware) -> Calibration:
    """Fit MFU and a fixed time per job to the official 720P totals on 1 and 8 GPUs, where
    total = STEPS x (compute + communication per step) + fixed, with the release's layouts (Ulysses
    over all ranks, both passes on each; their FSDP gathers taken as hidden behind compute); the
    4-GPU total is predicted from the fit as a check."""
    video = Video(1280, 720, 81)
    one, four, eight = Layout("", 1, 1), Layout("", 1, 4), Layout("", 1, 8)
    # compute seconds at MFU 1 (a), and communication seconds (c), per step
    a1, a4, a8 = (PASSES * forward_flops(video.tokens, x.ulysses) / PEAK_FLOPS for x in (one, four, eight))
    c4, c8 = (predict(video, x, hw).comm_s for x in (four, eight))
    inv_mfu = (OFFICIAL_TOTAL_S[1] - OFFICIAL_TOTAL_S[8] + STEPS * c8) / (STEPS * (a1 - a8))
    fixed = OFFICIAL_TOTAL_S[1] - STEPS * a1 * inv_mfu
    return Calibration(1 / inv_mfu, fixed, STEPS * (a4 * inv_mfu + c4) + fixed)


def prediction_table(rows: list[Row]) -> list[list[str]]:
    base = rows[0].step_s
    header = [
        "layout",
        "GPUs",
        "compute (s)",
        "communication (s)",
        "sent per rank (GB)",
        "predicted s/step",
        f"{STEPS} steps (s)",
        "speed-up",
    ]
    body = [
        [
            r.layout.name,
            str(r.layout.gpus),
            f"{r.compute_s:.2f}",
            f"{r.comm_s:.3f}",
            f"{r.comm.bytes / 1e9:.1f}",
            f"**{r.step_s:.2f}**",
            f"{STEPS * r.step_s:.0f}",
            f"{base / r.step_s:.2f}x",
        ]
        for r in rows
    ]
    return [header, *body]


def implied_mfu(video: Video, gpus: int, s_per_step: float) -> float:
    """The fraction of the bf16 peak a published s/step means if it were all dense bf16 matmul
    work, split as the release splits it (Ulysses over all GPUs, both passes on each)."""
    return PASSES * forward_flops(video.tokens, gpus) / (s_per_step * PEAK_FLOPS)


def published_table(hw: Hardware) -> list[list[str]]:
    """The published figures, each beside this model's prediction for the same shape and GPU count
    (Ulysses over all GPUs, the release's layout)."""
    hd, sd = Video(1280, 720, 81), Video(832, 480, 81)
    header = [
        "published",
        "model, size",
        "GPUs",
        "total (s)",
        "s/step",
        "speed-up",
        "MFU it implies",
        "predicted here (s/step)",
    ]
    rows = []
    for gpus, total in OFFICIAL_TOTAL_S.items():
        s, predicted = total / STEPS, predict(hd, Layout("", 1, gpus), hw).step_s
        rows.append(
            [
                "Wan2.2 (official)",
                "T2V-A14B 720P",
                str(gpus),
                f"{total:.1f}",
                f"{s:.2f}",
                f"{OFFICIAL_TOTAL_S[1] / total:.1f}x",
                f"{implied_mfu(hd, gpus, s):.2f}",
                f"{predicted:.2f}",
            ]
        )
    base = LIGHTX2V_S_PER_STEP[0][2]
    for name, gpus, s in LIGHTX2V_S_PER_STEP:
        predicted = predict(sd, Layout("", 1, gpus), hw).step_s
        rows.append(
            [
                f"LightX2V's table: {name}",
                "Wan2.1-I2V-14B 480P",
                str(gpus),
                "—",  # published per step only
                f"{s:.2f}",
                f"{base / s:.1f}x",
                f"{implied_mfu(sd, gpus, s):.2f}",
                f"{predicted:.2f}",
            ]
        )
    return [header, *rows]


def markdown(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in table[1:])])


def plain(table: list[list[str]]) -> str:
    cells = [[c.replace("**", "") for c in r] for r in table]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in cells
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true", help="print the tables of docs/performance.md")
    parser.add_argument("--size", default="1280*720", help="WIDTH*HEIGHT")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--mfu", type=float, default=0.52, help="fraction of the bf16 peak (calibration: 0.519)")
    parser.add_argument("--link-gbs", type=float, default=NVLINK_BYTES_S / 1e9, help="NVLink GB/s per direction")
    parser.add_argument("--link-efficiency", type=float, default=0.75, help="achieved fraction of --link-gbs")
    parser.add_argument("--latency-us", type=float, default=25.0, help="fixed cost of one collective")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("*"))
    video = Video(width, height, args.frames)
    hw = Hardware(args.mfu, args.link_efficiency, args.latency_us * 1e-6, args.link_gbs * 1e9)
    rows = [predict(video, layout, hw) for layout in LAYOUTS]
    if args.markdown:
        print(markdown(prediction_table(rows)))
        print()
        print(markdown(published_table(hw)))
        return 0

    f, h, w = video.latent
    print(
        f"Wan2.2 T2V-A14B, {width}*{height}, {args.frames} frames: latent {f} x {h} x {w}, "
        f"{video.tokens:,} tokens; {BLOCKS} blocks, d {DIM}, FFN {FFN}, {TEXT_TOKENS} text tokens"
    )
    print(
        f"one forward: {forward_flops(video.tokens) / 1e15:.2f} PFLOP ({100 * attention_share(video.tokens):.0f} % "
        f"in self-attention scores and values); a step with CFG: {PASSES} forwards"
    )
    print(
        f"H100 SXM: {PEAK_FLOPS / 1e12:.0f} TFLOP/s bf16 dense x MFU {hw.mfu} = {hw.flops_s / 1e12:.0f} TFLOP/s; "
        f"NVLink {hw.link_peak_bytes_s / 1e9:.0f} GB/s x {hw.link_efficiency} = {hw.link_bytes_s / 1e9:.0f} GB/s "
        f"per rank, {args.latency_us:.0f} us per collective, no overlap with compute\n"
    )
    print(plain(prediction_table(rows)))
    print("\nper rank per step:")
    for r in rows[1:]:
        c = r.comm
        print(
            f"  {r.layout.name:<34} all-to-alls {c.all_to_all_bytes / 1e9:6.2f} GB  gather "
            f"{c.gather_bytes / 1e6:5.1f} MB  swap {c.swap_bytes / 1e6:5.1f} MB  {c.collectives} collectives;  "
            f"with fsdp + {fsdp_gather_bytes(r.layout) / 1e9:4.1f} GB of parameter gathers "
            f"({r.fsdp_s:.3f} s if not hidden)"
        )

    cal = calibrate(hw)
    print(
        f"\ncalibration on the official 720P totals (1 and 8 GPUs): MFU {cal.mfu:.3f}, fixed {cal.fixed_s:.1f} s "
        f"per job; it gives 4 GPUs {cal.held_out_4gpu_s:.1f} s against the published {OFFICIAL_TOTAL_S[4]} s"
    )
    print(
        f"MFU if the whole official 1-GPU total were denoising: "
        f"{PASSES * STEPS * forward_flops(Video(1280, 720, 81).tokens) / PEAK_FLOPS / OFFICIAL_TOTAL_S[1]:.3f}"
    )
    print("\npublished figures (totals / 40 steps; the official ones include text encoding and VAE decode):")
    print(plain(published_table(hw)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
