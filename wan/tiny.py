"""Tiny random-weight Wan2.2 checkpoints in the real diffusers layout, built offline.

They load through exactly the same code as a real checkpoint (`wan.loader`), so tests and the
demo exercise the production path: two experts for A14B, 36 input channels for i2v, the Wan2.2
VAE (48 latent channels, 16x spatial) and `expand_timesteps` for ti2v-5B.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from wan.layout import write_model_index
from wan.loader import released_scheduler
from wan.presets import PRESETS

TEXT_DIM = 16
VOCAB_SIZE = 256
# The tokenizer's training text: enough words for prompts in tests to tokenize into real pieces.
_CORPUS = (
    "a the cat dog robot city night day sun rain snow forest river ocean car street light red blue green "
    "walks runs flies jumps dances slowly quickly over under through camera pans zooms close wide shot "
    "cinematic bright dark overexposed static blurred low quality worst ugly still picture people"
)


@dataclass(frozen=True)
class TransformerDims:
    """Transformer size of a random checkpoint: tiny by default, larger for benchmarks."""

    heads: int = 2  # 2 so Ulysses over 2 ranks splits them
    head_dim: int = 12  # gives the rope 4/4/4 (t/h/w) channels
    ffn_dim: int = 48
    layers: int = 2


def make_tiny(directory: str | Path, task: str, *, seed: int = 0, dims: TransformerDims | None = None) -> Path:
    """Write a tiny random checkpoint for `task` (a built-in task name) into `directory`."""
    if task not in PRESETS:
        raise ValueError(f"unknown task {task!r}; tiny checkpoints exist for {sorted(PRESETS)}")
    preset = PRESETS[task]
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    _tokenizer().save_pretrained(out / "tokenizer")
    _text_encoder().save_pretrained(out / "text_encoder")
    vae = _vae(wan22=preset.kind == "ti2v")
    vae.save_pretrained(out / "vae")
    released_scheduler().save_pretrained(out / "scheduler")
    in_channels = {"t2v": 16, "i2v": 36, "ti2v": 48}[preset.kind]
    out_channels = vae.config.z_dim
    dims = dims or TransformerDims()
    _transformer(in_channels, out_channels, dims).save_pretrained(out / "transformer")
    if preset.boundary_ratio is not None:
        _transformer(in_channels, out_channels, dims).save_pretrained(out / "transformer_2")
    write_model_index(out, preset.kind, preset.boundary_ratio, tokenizer_class="PreTrainedTokenizerFast")
    return out


def _tokenizer() -> PreTrainedTokenizerFast:
    """A Unigram tokenizer shaped like UMT5's (pad=0, eos=1, unk=2, metaspace, eos appended)."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    words = _CORPUS.split(" ")
    sentences = [" ".join(words[(i * 7 + j) % len(words)] for j in range(12)) for i in range(200)]
    tok.train_from_iterator(sentences + words + [chr(c) for c in range(32, 127)], trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def _text_encoder() -> UMT5EncoderModel:
    config = UMT5Config(
        vocab_size=VOCAB_SIZE,
        d_model=TEXT_DIM,
        d_kv=8,
        d_ff=32,
        num_layers=2,
        num_heads=2,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        dropout_rate=0.0,
    )
    return UMT5EncoderModel(config).eval()


def _transformer(in_channels: int, out_channels: int, dims: TransformerDims) -> WanTransformer3DModel:
    return WanTransformer3DModel(
        num_attention_heads=dims.heads,
        attention_head_dim=dims.head_dim,
        in_channels=in_channels,
        out_channels=out_channels,
        text_dim=TEXT_DIM,
        freq_dim=16,
        ffn_dim=dims.ffn_dim,
        num_layers=dims.layers,
        rope_max_seq_len=1024,
    ).eval()


def _vae(*, wan22: bool) -> AutoencoderKLWan:
    """Wan2.1 VAE (16 ch, 8x) for A14B; Wan2.2 VAE (48 ch, 16x with 2x2 patchify) for ti2v-5B."""
    z_dim = 48 if wan22 else 16
    gen = torch.Generator().manual_seed(1)
    common = dict(
        base_dim=8,
        z_dim=z_dim,
        dim_mult=[1, 2, 2, 2],
        num_res_blocks=1,
        latents_mean=(torch.randn(z_dim, generator=gen) * 0.1).tolist(),
        latents_std=(1.0 + torch.rand(z_dim, generator=gen)).tolist(),
    )
    if wan22:
        common |= dict(is_residual=True, in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16)
    return AutoencoderKLWan(**common).eval()
