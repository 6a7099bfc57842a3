"""Vision pre-training of the nano model: the stage a real vision-language model gets from its
pre-trained image encoder.

    python -m trainer.nano.vision --model build/nano/base/init --data build/nano/pretrain \\
        --out build/nano/vision [--steps 300 --batch-size 64 --lr 2e-3]

Why: Qwen2-VL's vision tower starts from a contrastively pre-trained ViT (DFN CLIP), and LLaVA-style
recipes keep such an encoder frozen while the language model learns to read it. Ours starts from
random weights, and trained only through the language-model loss it collapses: the image tokens
become one large constant vector (on the 2026-12-05 CPU base, 99.99% of their squared norm was
shared by every image and every position, against 67% at initialisation, and their norm grew from
1.1 to 235) and the base never read the picture (image gap 0.000001). The decoder, random at first,
gains more from a steady block of tokens than from noisy image features, and once the features are
constant nothing pushes them back.

This stage trains the vision tower alone on a dense perception task over the pre-training scenes
(seed 2, never an evaluation image): each image token (a 28x28-pixel cell after the 2x2 merge)
predicts the colour and the shape of the object that covers the cell's centre (the one nearest the
camera where boxes overlap) or "none", and, for a cell on an object, that object's geometry: where
its centre appears in the picture, where it stands on the ground and how far it is from the camera
(`--geometry-weight`, 0 to leave it out). Linear heads read the merger's output, the features the
decoder sees; they are dropped afterwards.

Why the geometry: with colour and shape alone, a base fine-tuned on 9,600 spatial questions stayed
at chance with answers independent of the picture (docs/embedded-model.md, "The letters
experiment"). The decoder's rotary positions only steer attention; what an attended image token
hands on is its features, so for the decoder to compare where two named objects are, their tokens
must carry where they are. Real encoders learn this from detection, grounding and depth data
(Qwen2-VL's ViT from grounding; monocular depth is a standard probe of ViT features). The targets
are one object's own facts, like a detector's box or a depth map; no relation between two objects,
no count and no question is a label. The model folder written to `<out>/model` is the input
model with the trained vision tower, to be pre-trained further with `trainer.nano.pretrain
--continue-from <out>/model --freeze-vision`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from ..metrics import JsonlWriter
from .lm import resolve_device, save

NONE = "none"
GEOMETRY = ("image_x", "image_y", "ground_x", "ground_z", "camera_distance")
MERGED_CELL = 28  # pixels per side of one image token: patch 14, merge 2


def cell_objects(record: dict, rows: int, cols: int, width: int, height: int) -> list[int | None]:
    """The index (in `meta.objects` order) of the object seen at each merged cell's centre, row-major,
    None where no object covers it. Boxes are in the picture's pixels; where several cover a centre,
    the object nearest the camera is the one seen."""
    objects = record["meta"]["objects"]
    seen = []
    for r in range(rows):
        for c in range(cols):
            x = (c + 0.5) * width / cols
            y = (r + 0.5) * height / rows
            covering = [(o["camera_distance"], i) for i, o in enumerate(objects)
                        if o["bbox_2d"][0] <= x <= o["bbox_2d"][2] and o["bbox_2d"][1] <= y <= o["bbox_2d"][3]]
            seen.append(min(covering)[1] if covering else None)
    return seen


def cell_labels(record: dict, rows: int, cols: int, width: int, height: int) -> tuple[list[str], list[str]]:
    """The colour and shape word of each merged cell, row-major (NONE where no object covers the
    cell's centre)."""
    scene_objects = record["meta"]["scene"]["objects"]
    seen = cell_objects(record, rows, cols, width, height)
    colours = [NONE if i is None else scene_objects[i]["color"] for i in seen]
    shapes = [NONE if i is None else scene_objects[i]["shape"] for i in seen]
    return colours, shapes


def picture_size(record: dict) -> tuple[int, int]:
    """Width and height of the picture the scene's boxes and centres are measured in."""
    image = record["meta"]["scene"]["image"]
    return image["width"], image["height"]


def object_geometry(record: dict, width: int, height: int) -> list[list[float]]:
    """Each object's GEOMETRY: where its centre appears in the picture (as a share of the width and
    the height), where it stands on the ground (metres across and ahead), and its distance from the
    camera. The per-object facts a detector or a depth estimator reads off one object; relations
    between objects are left to the decoder."""
    return [[o["center_2d"][0] / width, o["center_2d"][1] / height, o["center_3d"][0], o["center_3d"][2],
             o["camera_distance"]] for o in record["meta"]["objects"]]


def geometry_stats(records: list[dict]) -> tuple[list[float], list[float]]:
    """Mean and standard deviation of each GEOMETRY target over the objects of `records`, the
    normalisation of the geometry head's targets."""
    values = torch.tensor([g for r in records for g in object_geometry(r, *picture_size(r))])
    return values.mean(0).tolist(), values.std(0).clamp_min(1e-6).tolist()


def read_scenes(root: Path, split: str, max_items: int) -> list[dict]:
    scenes = []
    with open(root / f"{split}.jsonl", encoding="utf-8") as lines:
        for line in lines:
            if max_items and len(scenes) >= max_items:
                break
            scenes.append(json.loads(line))
    return scenes


class Encoder:
    """Pictures to the vision tower's inputs, and each picture's cell labels: colour and shape as
    class indices, and the normalised GEOMETRY of the object seen at the cell (NaN where none)."""

    def __init__(self, processor, root: Path, colours: list[str], shapes: list[str],
                 geometry_mean: list[float], geometry_std: list[float]):
        self.processor = processor
        self.root = root
        self.colour_index = {c: i for i, c in enumerate(colours)}
        self.shape_index = {s: i for i, s in enumerate(shapes)}
        self.mean = torch.tensor(geometry_mean)
        self.std = torch.tensor(geometry_std)

    def __call__(self, records: list[dict]) -> dict:
        images = []
        for record in records:
            with Image.open(self.root / record["images"][0]) as image:
                images.append(image.convert("RGB"))
        inputs = self.processor(images=images, return_tensors="pt")
        colour_labels, shape_labels, geometry, owners = [], [], [], []
        missing = [float("nan")] * len(GEOMETRY)
        for n, (record, (t, h, w)) in enumerate(zip(records, inputs["image_grid_thw"].tolist(), strict=True)):
            rows, cols = h // 2, w // 2
            width, height = picture_size(record)
            colours, shapes = cell_labels(record, rows, cols, width, height)
            seen = cell_objects(record, rows, cols, width, height)
            per_object = object_geometry(record, width, height)
            colour_labels += [self.colour_index[c] for c in colours] * t
            shape_labels += [self.shape_index[s] for s in shapes] * t
            geometry += [missing if i is None else per_object[i] for i in seen] * t
            owners += [-1 if i is None else n * 64 + i for i in seen] * t  # (picture, object) of each cell
        return {"pixel_values": inputs["pixel_values"], "image_grid_thw": inputs["image_grid_thw"],
                "colours": torch.tensor(colour_labels), "shapes": torch.tensor(shape_labels),
                "geometry": (torch.tensor(geometry) - self.mean) / self.std, "owners": torch.tensor(owners)}


def geometry_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the normalised GEOMETRY over the cells that show an object."""
    seen = ~target[:, 0].isnan()
    if not seen.any():
        return predicted.sum() * 0.0
    return torch.nn.functional.mse_loss(predicted[seen], target[seen])


def order_accuracy(predicted: torch.Tensor, target: torch.Tensor, owners: torch.Tensor, margin: float = 0.25) -> list[float]:
    """For each GEOMETRY target, how often the head orders two objects of one picture as they are
    (left of, above, nearer...): each object's prediction is the mean over its cells, and pairs
    closer than `margin` standard deviations are skipped. The kind of comparison the decoder will
    have to make from these features; nothing in training asks for it."""
    ids = owners.unique()
    ids = ids[ids >= 0]
    means_p = torch.stack([predicted[owners == i].mean(0) for i in ids])
    means_t = torch.stack([target[owners == i][0] for i in ids])
    right, total = torch.zeros(len(GEOMETRY)), torch.zeros(len(GEOMETRY))
    for picture in (ids // 64).unique():
        mine = (ids // 64 == picture).nonzero().flatten()
        for n, a in enumerate(mine):
            for b in mine[n + 1:]:
                diff_t = means_t[a] - means_t[b]
                considered = diff_t.abs() > margin
                right += ((torch.sign(means_p[a] - means_p[b]) == torch.sign(diff_t)) & considered).float()
                total += considered.float()
    return (right / total.clamp_min(1)).tolist()


def image_features(visual, pixel_values: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    out = visual(pixel_values, grid_thw=grid)
    if hasattr(out, "pooler_output"):  # transformers 5: the merged tokens are the pooler output
        return out.pooler_output
    return out[0] if isinstance(out, tuple | list) else out


@torch.no_grad()
def evaluate(visual, heads, batch: dict) -> dict:
    visual.eval()
    features = image_features(visual, batch["pixel_values"], batch["image_grid_thw"])
    colour = heads["colour"](features).argmax(-1)
    shape = heads["shape"](features).argmax(-1)
    on_object = batch["colours"] != 0
    visual.train()
    report = {
        "val_colour_acc": float((colour == batch["colours"]).float().mean()),
        "val_shape_acc": float((shape == batch["shapes"]).float().mean()),
        "val_object_colour_acc": float((colour == batch["colours"])[on_object].float().mean()),
        "val_object_shape_acc": float((shape == batch["shapes"])[on_object].float().mean()),
        "val_none_share": float((~on_object).float().mean()),
    }
    if "geometry" in heads:
        predicted = heads["geometry"](features)
        report["val_geometry_mse"] = float(geometry_loss(predicted, batch["geometry"]))
        for name, accuracy in zip(GEOMETRY, order_accuracy(predicted, batch["geometry"], batch["owners"]), strict=True):
            report[f"val_order_{name}"] = accuracy
    return report


def feature_spread(features: torch.Tensor, n_images: int) -> dict:
    """How much the image tokens differ: the share of their mean squared norm that is one vector
    shared by all of them (1.0 = collapsed), and their mean norm."""
    flat = features.reshape(-1, features.shape[-1])
    shared = flat.mean(0).norm() ** 2 / (flat.norm(dim=-1) ** 2).mean()
    return {"feature_norm": float(flat.norm(dim=-1).mean()), "shared_share": float(shared)}


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm
    from transformers import Qwen2VLForConditionalGeneration

    from ..processor import load_image_processor

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="model folder whose vision tower is trained")
    parser.add_argument("--data", required=True, type=Path, help="described scenes (npm run synth -- --describe)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--max-items", type=int, default=0, help="training scenes read (0: all)")
    parser.add_argument("--val-items", type=int, default=128)
    parser.add_argument("--max-pixels", type=int, default=28224)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--geometry-weight", type=float, default=1.0,
                        help="weight of the per-cell geometry loss (object position in the picture and on the "
                             "ground, distance from the camera); 0 trains colour and shape only, as the base "
                             "shipped on 2026-12-05 was")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    if device == "cpu":
        torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    if (args.out / "model" / "model.safetensors").exists():
        print(f"[vision] {args.out / 'model'} exists: kept", file=sys.stderr)
        return 0
    train_scenes = read_scenes(args.data, "train", args.max_items)
    val_scenes = read_scenes(args.data, "val", args.val_items)
    colours = [NONE] + sorted({o["color"] for r in train_scenes for o in r["meta"]["scene"]["objects"]})
    shapes = [NONE] + sorted({o["shape"] for r in train_scenes for o in r["meta"]["scene"]["objects"]})
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(args.model), dtype=torch.float32)
    visual = model.model.visual.to(device)
    visual.train()
    width = model.config.text_config.hidden_size if hasattr(model.config, "text_config") else model.config.hidden_size
    heads = {"colour": torch.nn.Linear(width, len(colours)), "shape": torch.nn.Linear(width, len(shapes))}
    if args.geometry_weight > 0:
        heads["geometry"] = torch.nn.Linear(width, len(GEOMETRY))
    heads = torch.nn.ModuleDict(heads).to(device)
    geometry_mean, geometry_std = geometry_stats(train_scenes)
    encoder = Encoder(load_image_processor(args.model, max_pixels=args.max_pixels), args.data, colours, shapes,
                      geometry_mean, geometry_std)
    params = list(visual.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)
    val_batch = {k: v.to(device) for k, v in encoder(val_scenes).items()}
    args.out.mkdir(parents=True, exist_ok=True)
    metrics = JsonlWriter(args.out / "metrics.jsonl")
    order = list(range(len(train_scenes)))
    random.shuffle(order)
    bar = tqdm(total=args.steps, desc="vision", file=sys.stderr, mininterval=2.0, dynamic_ncols=True)
    started = time.time()
    cursor = 0
    for step in range(1, args.steps + 1):
        if cursor + args.batch_size > len(order):
            random.shuffle(order)
            cursor = 0
        batch = {k: v.to(device) for k, v in encoder([train_scenes[i] for i in order[cursor:cursor + args.batch_size]]).items()}
        cursor += args.batch_size
        lr = args.lr * min(1.0, step / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * step / args.steps)).item()))
        for group in optimizer.param_groups:
            group["lr"] = lr
        features = image_features(visual, batch["pixel_values"], batch["image_grid_thw"])
        loss = (torch.nn.functional.cross_entropy(heads["colour"](features), batch["colours"])
                + torch.nn.functional.cross_entropy(heads["shape"](features), batch["shapes"]))
        if "geometry" in heads:
            loss = loss + args.geometry_weight * geometry_loss(heads["geometry"](features), batch["geometry"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        record = {"step": step, "total_steps": args.steps, "loss": loss.item(), "learning_rate": lr,
                  "seconds": time.time() - started}
        if step % args.eval_every == 0 or step == args.steps:
            record.update(evaluate(visual, heads, val_batch))
            with torch.no_grad():
                record.update(feature_spread(image_features(visual, val_batch["pixel_values"], val_batch["image_grid_thw"]),
                                             len(val_scenes)))
            ordered = "".join(f", order {name} {record[f'val_order_{name}']:.3f}" for name in GEOMETRY
                            if f"val_order_{name}" in record)
            bar.write(f"[vision] step {step}: colour {record['val_object_colour_acc']:.3f} shape "
                      f"{record['val_object_shape_acc']:.3f} on object cells{ordered}, shared share "
                      f"{record['shared_share']:.3f}")
        metrics.write(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)
        bar.update(1)
        started = time.time()
    bar.close()
    metrics.close()
    final = {k: v for k, v in record.items() if k.startswith("val_") or k in ("shared_share", "feature_norm")}
    (args.out / "vision.json").write_text(json.dumps({**final, "steps": args.steps, "colours": colours, "shapes": shapes,
                                                       "geometry_weight": args.geometry_weight, "geometry": GEOMETRY,
                                                       "geometry_mean": geometry_mean, "geometry_std": geometry_std},
                                                      indent=2) + "\n")
    model.to("cpu")
    save(model, args.model, args.out / "model")
    print(f"[vision] model with the trained vision tower in {args.out / 'model'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
