"""UniVL costs, each against the official way of doing the same thing, measured side by side in one run.

    python -m benchmarks.univl [--size tiny|small|base] [--device cpu|cuda] [--reps 5] [--attention sdpa|explicit]

Three markdown tables, every ratio taken from timings of this one process (methods interleaved per
repetition, median reported):

1. **Beam search.** ``UniVL.generate`` runs the text/video encoders and the cross encoder once per video
   and reuses the cross output at every decoding step. The official-style search recomputes them for
   the beam rows inside the decode function at every step (``shared/reference/univl.md`` §8 states that
   the official code recomputes the cross encoder; the row "encoders + cross" also redoes both encoders).
   Both go through the same :func:`~backbones.univl.generate.beam_search`, so ids must be identical and
   scores equal within 1e-5; the script asserts it.
2. **Alignment scoring.** ``alignment_similarity`` over N texts x N videos with all pairs in one call,
   with 64-text chunks, and with the official 5-text chunks (§4.3). The matrices must agree.
3. **Meta-step cost.** A UniVL with all 8 losses trained by :class:`meltr.Trainer` on random batches,
   K=3: every method of :data:`benchmarks.common.META_METHODS` (``sum``: no meta step; ``lite_official``:
   AID-FP-Lite official-style, create_graph through the backbone; the fast modes), with the saved-tensor
   and process memory peaks and the issue's goal lines (:func:`benchmarks.common.train_table`).

Weights are random: the point is cost and agreement, not caption quality.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from backbones.common.bert import BertConfig
from backbones.univl import UniVL, UniVLConfig
from backbones.univl.generate import BeamOutput, DecodeFn, beam_search
from backbones.common.attention import AttentionImpl, set_attention
from benchmarks.common import TrainSetup, median_ms, train_table

CLS_ID, SEP_ID, MASK_ID, FIRST_WORD_ID = 101, 102, 103, 104  # bert-base-uncased special ids


@dataclass(frozen=True)
class Size:
    """Model widths and workload sizes of one benchmark size."""

    hidden: int  # width of every tower
    ffn: int  # feed-forward width
    words: int  # L: text / caption length (max_words; also the beam's max_length)
    frames: int  # F: frames per video
    batch: int  # training batch (table 3) and number of videos captioned per beam-search batch (table 1)
    n_align: int  # N texts x N videos scored in table 2
    chunk: int  # the larger text chunk of table 2 (below n_align, so it differs from one call)
    steps: int  # timed training steps per method in table 3 (a multiple of K)


SIZES: dict[str, Size] = {
    # UniVLConfig.tiny()'s widths and lengths (the golden fixture's).
    "tiny": Size(hidden=32, ffn=64, words=12, frames=10, batch=8, n_align=128, chunk=64, steps=24),
    # Same depth, wider and longer, so fewer of the milliseconds are Python overhead.
    "small": Size(hidden=64, ffn=128, words=24, frames=32, batch=16, n_align=64, chunk=32, steps=12),
    # UniVLConfig.base() (BERT-base towers 12/6/2/3 layers), YouCook2 retrieval's L=F=48 and batch 32 (GPU).
    "base": Size(hidden=768, ffn=3072, words=48, frames=48, batch=32, n_align=64, chunk=32, steps=6),
}
META_EVERY = 3  # K, as the official UniVL MELTR runs
BEAM_SIZE = 5  # official, hard-coded


def build_config(size: str) -> UniVLConfig:
    """UniVL with all 8 losses at ``SIZES[size]``: ``base`` is :meth:`UniVLConfig.base`, the others have 2
    layers and 4 heads per tower and vocab 512."""
    s = SIZES[size]
    if size == "base":
        return UniVLConfig.base(max_words=s.words, max_frames=s.frames)

    def tower(vocab: int, positions: int) -> BertConfig:
        return BertConfig(vocab_size=vocab, hidden_size=s.hidden, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=s.ffn, max_position_embeddings=positions)

    return UniVLConfig.tiny(text=tower(512, 64), visual=tower(1024, 64), cross=tower(32, 128),
                            decoder=tower(512, 64), max_words=s.words, max_frames=s.frames)


def random_batch(cfg: UniVLConfig, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
    """A random UniVL batch with the official shapes and masks (see :class:`backbones.univl.UniVLBatch`).

    Text and clip lengths vary per row; every row has one masked word (never [CLS]/[SEP]) and one
    masked frame, because MLM/MFM average over masked positions and an empty batch of them is NaN.
    """
    n, length, frames, vocab = batch_size, cfg.max_words, cfg.max_frames, cfg.text.vocab_size
    rows, words, slots = torch.arange(n), torch.arange(length), torch.arange(frames)
    text_len = torch.randint(3, length + 1, (n,), generator=generator)  # [CLS] + >=1 word + [SEP]
    clip_len = torch.randint(1, frames + 1, (n,), generator=generator)
    attention_mask = (words < text_len[:, None]).long()
    input_ids = torch.randint(FIRST_WORD_ID, vocab, (n, length), generator=generator) * attention_mask
    input_ids[:, 0] = CLS_ID
    input_ids[rows, text_len - 1] = SEP_ID
    video_mask = (slots < clip_len[:, None]).long()
    video = torch.randn(n, frames, cfg.video_dim, generator=generator) * video_mask[..., None]

    word_pos = 1 + (torch.rand(n, generator=generator) * (text_len - 2)).long()  # in [1, text_len - 2]
    masked_text = input_ids.clone()
    masked_text[rows, word_pos] = MASK_ID
    token_labels = torch.full((n, length), -1, dtype=torch.long)
    token_labels[rows, word_pos] = input_ids[rows, word_pos]
    frame_pos = (torch.rand(n, generator=generator) * clip_len).long()  # in [0, clip_len - 1]
    masked_video = video.clone()
    masked_video[rows, frame_pos] = 0.0
    frame_labels = torch.full((n, frames), -1, dtype=torch.long)
    frame_labels[rows, frame_pos] = frame_pos

    # Decoder input "[CLS] c1..ck" and target "c1..ck [SEP]", both 0-padded (the official loaders' layout).
    caption_len = torch.randint(2, length + 1, (n,), generator=generator)
    decoder_mask = (words < caption_len[:, None]).long()
    caption = torch.randint(FIRST_WORD_ID, vocab, (n, length), generator=generator) * decoder_mask
    caption[:, 0] = CLS_ID
    target = torch.cat([caption[:, 1:], torch.zeros(n, 1, dtype=torch.long)], dim=1)
    target[rows, caption_len - 1] = SEP_ID
    return {
        "input_ids": input_ids, "token_type_ids": torch.zeros_like(input_ids), "attention_mask": attention_mask,
        "video": video, "video_mask": video_mask, "pairs_masked_text": masked_text,
        "pairs_token_labels": token_labels, "masked_video": masked_video, "video_labels_index": frame_labels,
        "input_caption_ids": caption, "decoder_mask": decoder_mask, "output_caption_ids": target,
    }


# ---------------------------------------------------------------------------------------- beam search


def official_decode_fn(model: UniVL, input_ids: Tensor, token_type_ids: Tensor | None, attention_mask: Tensor,
                       video: Tensor, video_mask: Tensor, *, beam_size: int = BEAM_SIZE,
                       encoders: bool = True) -> DecodeFn:
    """The official-style decode step for :func:`beam_search`: nothing is cached across steps.

    Beam row ``r`` belongs to video ``r // beam_size`` (instance-major, like the official
    ``repeat(1, n_bm, 1)``). At every step the cross encoder, and with ``encoders`` also the text and
    video encoders, run again on the inputs of the requested rows before the decoder.

    Args:
        model: a UniVL with ``cross`` and ``decoder``, in eval mode.
        input_ids: ``[B, L]``. token_type_ids: ``[B, L]`` or None. attention_mask: ``[B, L]``.
        video: ``[B, F, D]`` raw features. video_mask: ``[B, F]``.
        beam_size: beams per video (must match the ``beam_search`` call).
        encoders: recompute the two encoders per step too; False recomputes only the cross encoder.

    Returns:
        ``decode(rows [R], prefixes [R, t]) -> logits [R, t, vocab]``.
    """
    if not encoders:
        text_cached = model.encode_text(input_ids, token_type_ids, attention_mask)
        video_cached = model.encode_video(video, video_mask)

    def decode(rows: Tensor, prefixes: Tensor) -> Tensor:
        src = torch.div(rows, beam_size, rounding_mode="floor")
        text_mask, frame_mask = attention_mask[src], video_mask[src]
        if encoders:
            types = None if token_type_ids is None else token_type_ids[src]
            text = model.encode_text(input_ids[src], types, text_mask)
            frames = model.encode_video(video[src], frame_mask)
        else:
            text, frames = text_cached[src], video_cached[src]
        cross = model.cross_encode(text, text_mask, frames, frame_mask)
        return model.decode(cross.hidden, cross.mask, prefixes, torch.ones_like(prefixes))

    return decode


def official_generate(model: UniVL, input_ids: Tensor, token_type_ids: Tensor | None, attention_mask: Tensor,
                      video: Tensor, video_mask: Tensor, *, beam_size: int = BEAM_SIZE, max_length: int | None = None,
                      encoders: bool = True) -> BeamOutput:
    """:meth:`UniVL.generate`'s search with :func:`official_decode_fn` instead of the cached cross output."""
    with torch.no_grad():
        decode = official_decode_fn(model, input_ids, token_type_ids, attention_mask, video, video_mask,
                                    beam_size=beam_size, encoders=encoders)
        return beam_search(decode, input_ids.shape[0], beam_size=beam_size,
                           max_length=model.cfg.max_words if max_length is None else max_length,
                           bos_id=CLS_ID, eos_id=SEP_ID, device=input_ids.device)


# ---------------------------------------------------------------------------------------- tables


def bench_beam(model: UniVL, size: Size, device: torch.device, reps: int) -> list[str]:
    """Table 1: cached cross output vs the official-style recomputation; asserts identical results."""
    g = torch.Generator().manual_seed(1)
    batch = {k: v.to(device) for k, v in random_batch(model.cfg, size.batch, g).items()}
    args = (model, batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], batch["video"],
            batch["video_mask"])
    runs: dict[str, Callable[[], BeamOutput]] = {
        "ours: `generate` (cross output cached)": lambda: model.generate(*args[1:], beam_size=BEAM_SIZE),
        "official-style: encoders + cross per step": lambda: official_generate(*args, encoders=True),
        "official (§8): cross per step": lambda: official_generate(*args, encoders=False),
    }
    outputs = {name: fn() for name, fn in runs.items()}  # also the warm-up
    ours = outputs[next(iter(runs))]
    same = {name: out.ids == ours.ids and torch.allclose(out.scores, ours.scores, rtol=0, atol=1e-5)
            for name, out in outputs.items()}
    ms = median_ms(runs, reps, warmup=0, device=device)
    base = ms[next(iter(runs))]
    steps = max(len(ids) for ids in ours.ids)
    lines = [f"### 1. Beam search: {size.batch} videos x beam {BEAM_SIZE}, up to {size.words} steps "
             f"(this run: {steps}), L={size.words}, F={size.frames}\n",
             "| method | ms / batch | time vs ours | same ids, scores within 1e-5 |", "|---|---|---|---|"]
    for name in runs:
        lines.append(f"| {name} | {ms[name]:.1f} | {ms[name] / base:.2f}x | {'yes' if same[name] else 'no'} |")
    lines.append(f"\nsame outputs: {'yes' if all(same.values()) else 'no'}")
    assert all(same.values()), f"beam search outputs differ: {same}"
    return lines


def bench_alignment(model: UniVL, size: Size, device: torch.device, reps: int) -> list[str]:
    """Table 2: alignment scores of all N x N pairs in one call vs chunked calls."""
    g = torch.Generator().manual_seed(2)
    batch = {k: v.to(device) for k, v in random_batch(model.cfg, size.n_align, g).items()}
    with torch.no_grad():
        text = model.encode_text(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        video = model.encode_video(batch["video"], batch["video_mask"])

    def score(chunk: int | None) -> Callable[[], Tensor]:
        def run() -> Tensor:
            with torch.no_grad():
                return model.alignment_similarity(text, batch["attention_mask"], video, batch["video_mask"],
                                                  text_chunk=chunk)
        return run

    official_name = "official: 5 texts per call (`text_chunk=5`)"
    chunks = {"all pairs in one call (`text_chunk=None`)": None, f"`text_chunk={size.chunk}`": size.chunk,
              official_name: 5}
    runs = {name: score(c) for name, c in chunks.items()}
    outputs = {name: fn() for name, fn in runs.items()}  # also the warm-up
    diffs = {name: float((out - outputs[official_name]).abs().max()) for name, out in outputs.items()}
    ms = median_ms(runs, reps, warmup=0, device=device)
    official = ms[official_name]
    n = size.n_align
    lines = [f"### 2. Alignment scoring: {n} texts x {n} videos = {n * n} cross-encoder pairs, "
             f"L+F={size.words + size.frames}\n",
             "| method | ms | speed vs official (official / this) | max abs diff vs official |", "|---|---|---|---|"]
    for name in runs:
        lines.append(f"| {name} | {ms[name]:.1f} | {official / ms[name]:.2f}x | {diffs[name]:.1e} |")
    assert max(diffs.values()) <= 1e-5, f"alignment scores depend on the chunking: {diffs}"
    return lines


def train_setup(size_name: str, attention: AttentionImpl | None = None) -> TrainSetup:
    """Table 3's training setup: UniVL with all 8 losses, the paper's Adam (A.3), K=3, gamma 0.1
    (configs/univl/*.yaml); ``attention`` through :func:`backbones.common.attention.set_attention`."""
    from meltr import OptimConfig

    size, cfg = SIZES[size_name], build_config(size_name)
    if attention:
        set_attention(cfg, attention)
    return TrainSetup(name="UniVL", describe=f"8 losses, hidden {cfg.text.hidden_size}, batch {size.batch}, "
                                             f"L={size.words}, F={size.frames}, MELTR preset univl",
                      make_model=lambda: UniVL(cfg), make_batch=lambda g: random_batch(cfg, size.batch, g), preset="univl", config=cfg,
                      optim=OptimConfig(name="adam", lr=3e-5, schedule="constant", clip_grad_norm=1.0), every=META_EVERY)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions for tables 1 and 2 (median)")
    parser.add_argument("--windows", type=int, default=None, help="timed windows of K steps for table 3")
    parser.add_argument("--attention", choices=("sdpa", "explicit"), default=None,
                        help="attention implementation (configs with an `attention` field); default: the config's")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    device, size = torch.device(args.device), SIZES[args.size]
    torch.manual_seed(0)
    cfg = build_config(args.size)
    if args.attention:
        set_attention(cfg, args.attention)
    model = UniVL(cfg).to(device).eval()  # eval: dropout off, so searches are deterministic
    print(f"UniVL {args.size} (hidden {size.hidden}, {cfg.text.num_hidden_layers} text layers), {args.device}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}\n")
    for table in (bench_beam(model, size, device, args.reps), bench_alignment(model, size, device, args.reps),
                  train_table(train_setup(args.size, args.attention), device, args.windows or size.steps // META_EVERY,
                              title=f"### 3. Meta-step cost: UniVL {args.size}")):
        print("\n".join(table) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
