"""Zero-shot text-prompted detectors through transformers: GroundingDINO and OWLv2.

Both take a batch of preprocessed images and, per image, a list of :class:`Query` objects, and
return :class:`Detections` (xyxy pixel boxes in the original image, clipped to it; scores; the
index of the query each box answers; the matched text).

**GroundingDINO** (``AutoModelForZeroShotObjectDetection``) grounds phrases of one caption. A
query becomes the caption ``"t1 . t2 . ."``; every (image, query) pair is one forward row, so
top-k and GT-label queries are detected independently, as in L2R². A box's score is the highest
token probability over the caption's phrases (GroundingDINO's box score, special tokens
excluded); boxes scoring at most ``box_threshold`` are dropped. The box's text is the phrase
holding that token; a phrase is grounded only by tokens above ``text_threshold``, as in
GroundingDINO's own label extraction, so boxes whose best token is at most ``text_threshold`` are
dropped too. *Averaged meta-prompts*: GroundingDINO fuses text and image inside the model and
takes no text embeddings, so the averaged query ("animal", "bird", "insect", "reptile") is the
single caption ``"animal . bird . insect . reptile ."``: each predicted box scores its best
phrase, which makes the detections the union over the meta-prompts, each box labelled with the
phrase it matched. ``.`` inside a text would split a phrase and is replaced by a space.

**OWLv2** (``Owlv2ForObjectDetection``) scores every image patch against query *embeddings*:
the L2-normalised text embeddings of a query's texts are averaged (the paper's averaged
meta-prompt) and fed to the class head; scores are ``sigmoid(logits)`` above ``threshold``.
Text embeddings are cached per text. Boxes are predicted on the image padded to a square, so
they are scaled by the longer side, as transformers' post-processing does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from occam_l2r.segment.detection import (
    Detections,
    Detector,
    clip_boxes,
    concat_detections,
    cxcywh_to_xyxy,
    pad_images,
)
from occam_l2r.segment.prompts import Query

__all__ = ["Detections", "Detector", "GroundingDino", "Owlv2"]


class GroundingDino(Detector):
    """GroundingDINO via transformers (see the module docstring for scoring and captions).

    Args:
        model: ``IDEA-Research/grounding-dino-base`` (or ``-tiny``), or a local folder.
        box_threshold: keep boxes whose score exceeds this (0.3, as in L2R²).
        text_threshold: token probability that grounds a phrase (0.25).
        chunk_size: (image, query) pairs per forward pass.
    """

    name = "gdino"
    model_types = ("grounding-dino",)

    def __init__(
        self,
        model: str = "IDEA-Research/grounding-dino-base",
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
        chunk_size: int = 32,
        cache_dir: str | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(model, cache_dir, download)
        self.box_threshold = box_threshold
        self.text_threshold = text_threshold
        self.chunk_size = chunk_size

    def _model_class(self) -> Any:
        from transformers import AutoModelForZeroShotObjectDetection

        return AutoModelForZeroShotObjectDetection

    def config(self) -> dict[str, Any]:
        return {
            "detector": self.name,
            "model": self.model_id,
            "box_threshold": self.box_threshold,
            "text_threshold": self.text_threshold,
        }

    @staticmethod
    def caption(query: Query) -> tuple[str, list[str]]:
        """The caption of a query and its phrases (``.`` inside a text becomes a space)."""
        phrases = [" ".join(t.replace(".", " ").lower().split()) for t in query.texts]
        return " . ".join(phrases) + " .", phrases

    def _phrase_index(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Per token, the index of the phrase it belongs to; -1 for special tokens and dots."""
        tok = self.processor.tokenizer
        dot = tok.convert_tokens_to_ids(".")
        special = torch.tensor(sorted(set(tok.all_special_ids) | {dot}), device=input_ids.device)
        is_dot = input_ids == dot
        phrase = torch.cumsum(is_dot.long(), dim=-1) - is_dot.long()
        return torch.where(torch.isin(input_ids, special), torch.full_like(phrase, -1), phrase)

    @torch.no_grad()
    def detect(
        self,
        inputs: Sequence[dict[str, torch.Tensor]],
        sizes: Sequence[tuple[int, int]],
        queries: Sequence[Sequence[Query]],
    ) -> list[Detections]:
        assert self.model is not None, "call load() first"
        device = self.device
        pairs = [(i, q) for i, qs in enumerate(queries) for q in range(len(qs))]
        parts: list[list[Detections]] = [[] for _ in inputs]
        max_len = int(self.model.config.max_text_len)
        for start in range(0, len(pairs), self.chunk_size):
            chunk = pairs[start : start + self.chunk_size]
            pixels, mask = pad_images([inputs[i]["pixel_values"].to(device) for i, _ in chunk])
            captions = [self.caption(queries[i][q]) for i, q in chunk]
            text = self.processor.tokenizer(
                [c for c, _ in captions],
                padding=True,
                truncation=True,
                max_length=max_len,
                return_tensors="pt",
            ).to(device)
            out = self.model(pixel_values=pixels, pixel_mask=mask, **text)
            n_tok = text["input_ids"].shape[1]
            probs = out.logits[..., :n_tok].float().sigmoid()  # (P, num_queries, T)
            boxes_rel = cxcywh_to_xyxy(out.pred_boxes.float())
            phrase_idx = self._phrase_index(text["input_ids"])
            for row, (i, q) in enumerate(chunk):
                phrases = captions[row][1]
                per_phrase = torch.stack(
                    [
                        probs[row][:, phrase_idx[row] == j].max(dim=-1).values
                        if bool((phrase_idx[row] == j).any())
                        else probs.new_zeros(probs.shape[1])
                        for j in range(len(phrases))
                    ],
                    dim=-1,
                )  # (num_queries, phrases)
                score, best = per_phrase.max(dim=-1)
                keep = (score > self.box_threshold) & (score > self.text_threshold)
                h, w = sizes[i]
                scale = torch.tensor([w, h, w, h], device=device, dtype=torch.float32)
                boxes = clip_boxes(boxes_rel[row][keep] * scale, h, w)
                parts[i].append(
                    Detections(
                        boxes,
                        score[keep],
                        torch.full((int(keep.sum()),), q, dtype=torch.long, device=device),
                        [phrases[int(b)] for b in best[keep].tolist()],
                    )
                )
        return [concat_detections(p, device) for p in parts]


class Owlv2(Detector):
    """OWLv2 via transformers, prompted with (averaged) text query embeddings.

    Args:
        model: ``google/owlv2-base-patch16-ensemble`` (or ``-large-``), or a local folder.
        threshold: keep patch boxes whose score ``sigmoid(logit)`` exceeds this (0.1, as
            transformers' post-processing).
    """

    name = "owlv2"
    model_types = ("owlv2",)

    def __init__(
        self,
        model: str = "google/owlv2-base-patch16-ensemble",
        threshold: float = 0.1,
        cache_dir: str | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(model, cache_dir, download)
        self.threshold = threshold
        self._text_cache: dict[str, torch.Tensor] = {}

    def _model_class(self) -> Any:
        from transformers import Owlv2ForObjectDetection

        return Owlv2ForObjectDetection

    def config(self) -> dict[str, Any]:
        return {"detector": self.name, "model": self.model_id, "threshold": self.threshold}

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings ``(len(texts), D)``, float32, cached per text."""
        assert self.model is not None, "call load() first"
        device = self.device
        missing = sorted({t for t in texts if t not in self._text_cache})
        if missing:
            max_len = int(self.model.config.text_config.max_position_embeddings)
            tok = self.processor.tokenizer(
                missing, padding=True, truncation=True, max_length=max_len, return_tensors="pt"
            ).to(device)
            emb = self.model.owlv2.get_text_features(**tok).pooler_output.float()
            emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-6)
            self._text_cache.update(zip(missing, emb, strict=True))
        return torch.stack([self._text_cache[t].to(device) for t in texts])

    def query_embeddings(
        self, queries: Sequence[Sequence[Query]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ``(B, Q, D)`` query embeddings (texts of a query averaged) and ``(B, Q)`` mask."""
        n_max = max(1, max(len(qs) for qs in queries))
        flat = [t for qs in queries for q in qs for t in q.texts]
        if not flat:
            raise ValueError("OWLv2 needs at least one text query in the batch")
        table = dict(zip(flat, self.text_embeddings(flat), strict=False))
        dim = next(iter(table.values())).shape[-1]
        emb = torch.zeros((len(queries), n_max, dim), device=self.device)
        mask = torch.zeros((len(queries), n_max), dtype=torch.bool, device=self.device)
        for i, qs in enumerate(queries):
            for j, q in enumerate(qs):
                emb[i, j] = torch.stack([table[t] for t in q.texts]).mean(dim=0)
                mask[i, j] = True
        return emb, mask

    @torch.no_grad()
    def detect(
        self,
        inputs: Sequence[dict[str, torch.Tensor]],
        sizes: Sequence[tuple[int, int]],
        queries: Sequence[Sequence[Query]],
    ) -> list[Detections]:
        assert self.model is not None, "call load() first"
        device = self.device
        if not any(queries):
            return [Detections.empty(device) for _ in inputs]
        pixels = torch.stack([x["pixel_values"].to(device) for x in inputs])
        feature_map, _ = self.model.image_embedder(pixel_values=pixels)
        b, ph, pw, d = feature_map.shape
        image_feats = feature_map.reshape(b, ph * pw, d)
        query_embeds, query_mask = self.query_embeddings(queries)
        logits, _ = self.model.class_predictor(
            image_feats, query_embeds.to(image_feats.dtype), query_mask
        )
        scores = logits.float().sigmoid()  # (B, patches, Q)
        boxes_rel = cxcywh_to_xyxy(self.model.box_predictor(image_feats, feature_map).float())
        out = []
        for i, qs in enumerate(queries):
            h, w = sizes[i]
            side = float(max(h, w))
            found = []
            for q, query in enumerate(qs):
                keep = scores[i, :, q] > self.threshold
                boxes = clip_boxes(boxes_rel[i][keep] * side, h, w)
                n = int(keep.sum())
                found.append(
                    Detections(
                        boxes,
                        scores[i, keep, q],
                        torch.full((n,), q, dtype=torch.long, device=device),
                        [query.name] * n,
                    )
                )
            out.append(concat_detections(found, device))
        return out
