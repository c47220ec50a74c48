"""Tiny random-initialised GroundingDINO, OWLv2, SAM and SAM 2, written to disk like real weights.

For tests, benchmarks and smoke runs on machines without downloads: the models are built from
small transformers / segment-anything configurations and saved with ``save_pretrained`` (or as a
SAM state dict), so the real loading code reads them from a local folder. :data:`SAM2_HIERA_LARGE`
is the architecture of SAM 2.1 Hiera-L (random weights at full size, for throughput benchmarks). Tokenizers are built
offline: a BERT WordPiece vocabulary whose special tokens sit at BERT's ids ([PAD]=0, [CLS]=101,
[SEP]=102, "."=1012, which GroundingDINO relies on) and a CLIP BPE tokenizer made from the first
merges of the BPE table shipped inside open_clip. Their outputs are random (the tiny OWLv2's box
offsets are scaled down so its boxes stay near the patch priors instead of saturating outside the
image); the code paths are real.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import torch

from occam_l2r.segment.sam import SamArch, build_sam

#: words of the tiny BERT vocabulary (plus single letters and ## continuations)
WORDS = (
    "zero one two three four five six seven eight nine full dog mushroom animal bird insect "
    "reptile a photo of the cat object thing"
).split()

#: architecture of the tiny SAM (64-pixel input, 4x4 embedding grid)
TINY_SAM = SamArch(
    encoder_embed_dim=32,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=[1],
    image_size=64,
    patch_size=16,
    window_size=2,
    prompt_embed_dim=32,
    decoder_depth=2,
    decoder_mlp_dim=64,
    decoder_num_heads=2,
    iou_head_hidden_dim=32,
)

#: SAM ViT-H's architecture (``sam_vit_h_4b8939.pth``) as a ``custom`` SAM: random weights at full
#: size for throughput benchmarks
SAM_VIT_H = SamArch(
    encoder_embed_dim=1280,
    encoder_depth=32,
    encoder_num_heads=16,
    encoder_global_attn_indexes=[7, 15, 23, 31],
)


def bert_vocab() -> list[str]:
    """A WordPiece vocabulary with BERT's special-token ids and a few words."""
    vocab = (
        ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    vocab += [f"[unused{i}]" for i in range(len(vocab), 1012)]
    vocab.append(".")
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab += WORDS + list(letters) + [f"##{c}" for c in letters] + ["?", ",", "-"]
    return vocab


def tiny_grounding_dino(
    folder: str | Path, seed: int = 0, image_size: int = 64, full_size: bool = False
) -> Path:
    """Save a tiny GroundingDINO (Swin backbone, 1+2 layers, d_model 32) and its processor.

    ``full_size``: GroundingDINO-B's architecture instead (Swin-B at 384, BERT-base text encoder
    over the tiny vocabulary, 6+6 layers, 900 queries; processor at 800 / 1333 px), random weights
    for throughput benchmarks.
    """
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoProcessor,
        SwinConfig,
    )
    from transformers.models.grounding_dino.image_processing_grounding_dino import (
        GroundingDinoImageProcessor,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = bert_vocab()
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(vocab=str(vocab_file))
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(
            image_size=image_size,
            patch_size=4,
            embed_dim=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 2, 2],
            window_size=4,
            out_indices=[2, 3, 4],
        ),
        text_config=BertConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        ),
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=16,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=32,
    )
    size = {"shortest_edge": image_size, "longest_edge": image_size * 3 // 2}
    if full_size:
        swin_b = SwinConfig(
            image_size=384,
            embed_dim=128,
            depths=[2, 2, 18, 2],
            num_heads=[4, 8, 16, 32],
            window_size=12,
            out_indices=[2, 3, 4],
        )
        config = GroundingDinoConfig(
            backbone_config=swin_b, text_config=BertConfig(vocab_size=len(vocab))
        )
        size = {"shortest_edge": 800, "longest_edge": 1333}
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(config).eval()
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size=size),
        tokenizer=tokenizer,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    vocab_file.unlink()
    return folder


def clip_bpe_tokenizer(num_merges: int = 1000):  # type: ignore[no-untyped-def]
    """A CLIP tokenizer from the first ``num_merges`` merges of open_clip's BPE table (offline)."""
    import open_clip
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPTokenizer

    table = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(table).read().decode("utf-8").split("\n")[1 : 1 + num_merges]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(
        vocab={t: i for i, t in enumerate(tokens)},
        merges=merges,
        unk_token="<|endoftext|>",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="!",
    )


def tiny_owlv2(folder: str | Path, seed: int = 0, image_size: int = 64) -> Path:
    """Save a tiny OWLv2 (1-layer ViT, 16-pixel patches, width 32) and its processor."""
    from transformers import (
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    folder = Path(folder)
    tokenizer = clip_bpe_tokenizer()
    n = len(tokenizer.get_vocab())
    config = Owlv2Config(
        text_config={
            "vocab_size": n,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "bos_token_id": n - 2,
            "eos_token_id": n - 1,
            "pad_token_id": 0,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": 16,
        },
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = Owlv2ForObjectDetection(config).eval()
    with (
        torch.no_grad()
    ):  # random box offsets saturate the sigmoid; keep them near each patch's prior box
        model.box_head.dense2.weight.mul_(0.01)
        model.box_head.dense2.bias.zero_()
    processor = Owlv2Processor(
        image_processor=Owlv2ImageProcessor(size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def tiny_sam(path: str | Path, seed: int = 0, arch: SamArch = TINY_SAM) -> Path:
    """Save the state dict of a tiny SAM (:data:`TINY_SAM`) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.save(build_sam(arch).state_dict(), path)
    return path


#: architecture of the tiny SAM 2 (64-pixel input; Hiera of 5 blocks, widths 16-128; FPN 32)
TINY_SAM2: dict = {
    "image_size": 64,
    "hiera": {
        "hidden_size": 16,
        "num_attention_heads": 1,
        "blocks_per_stage": [1, 1, 2, 1],
        "embed_dim_per_stage": [16, 32, 64, 128],
        "num_attention_heads_per_stage": [1, 1, 2, 2],
        "window_size_per_stage": [4, 2, 2, 2],
        "global_attention_blocks": [3],
        "window_positional_embedding_background_size": [4, 4],
    },
    "hidden_size": 32,
    "decoder_mlp_dim": 64,
    "decoder_num_heads": 2,
}

#: SAM 2.1 Hiera-L (``facebook/sam2.1-hiera-large``: sam2.1_hiera_l.yaml of the SAM 2 release)
SAM2_HIERA_LARGE: dict = {
    "image_size": 1024,
    "hiera": {
        "hidden_size": 144,
        "num_attention_heads": 2,
        "blocks_per_stage": [2, 6, 36, 4],
        "embed_dim_per_stage": [144, 288, 576, 1152],
        "num_attention_heads_per_stage": [2, 4, 8, 16],
        "window_size_per_stage": [8, 4, 16, 8],
        "global_attention_blocks": [23, 33, 43],
        "window_positional_embedding_background_size": [7, 7],
    },
    "hidden_size": 256,
    "decoder_mlp_dim": 2048,
    "decoder_num_heads": 8,
}


def sam2_config(arch: dict):  # type: ignore[no-untyped-def]
    """A transformers ``Sam2Config`` of ``arch`` (:data:`TINY_SAM2`, :data:`SAM2_HIERA_LARGE`)."""
    from transformers import Sam2Config

    size, hiera, hidden = arch["image_size"], arch["hiera"], arch["hidden_size"]
    dims = hiera["embed_dim_per_stage"]
    levels = [[size // s, size // s] for s in (4, 8, 16)]
    return Sam2Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam2_hiera_det_model",
                "image_size": [size, size],
                **hiera,
            },
            "backbone_channel_list": list(reversed(dims)),
            "backbone_feature_sizes": levels,
            "fpn_hidden_size": hidden,
        },
        prompt_encoder_config={"hidden_size": hidden, "image_size": size, "patch_size": 16},
        mask_decoder_config={
            "hidden_size": hidden,
            "mlp_dim": arch["decoder_mlp_dim"],
            "num_attention_heads": arch["decoder_num_heads"],
            "iou_head_hidden_dim": hidden,
        },
    )


def tiny_sam2(folder: str | Path, seed: int = 0, arch: dict = TINY_SAM2) -> Path:
    """Save a random-initialised SAM 2 of ``arch`` (default :data:`TINY_SAM2`) and its processor
    (resizing to the model's input size) with ``save_pretrained``."""
    from transformers import Sam2ImageProcessor, Sam2Model, Sam2Processor

    folder = Path(folder)
    size = arch["image_size"]
    torch.manual_seed(seed)
    model = Sam2Model(sam2_config(arch)).eval()
    processor = Sam2Processor(
        image_processor=Sam2ImageProcessor(
            size={"height": size, "width": size},
            mask_size={"height": size // 4, "width": size // 4},
        )
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
