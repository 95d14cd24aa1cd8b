"""Does the ``smoke`` suite teach a small ViT something within a minute or two of CPU? (Not a test.)

Trains a tiny timm ViT (patch 4, width 64, depth 4, ~142k parameters) with the smoke suite's own
recipe through ``BatchedRecipe`` (AdamW, linear warm-up then cosine per iteration, Mixup/CutMix loss)
and prints test accuracy after every epoch; chance is 10%.

    python3 benchmarks/smoke_vit.py [--threads 1] [--set epochs=10 ...]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from timm.models.vision_transformer import VisionTransformer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vbench.augment import BatchedRecipe, mixed_cross_entropy  # noqa: E402
from vbench.data import load_split  # noqa: E402
from vbench.suites import load_suite  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--set", action="append", default=[], help="recipe key=value (repeatable)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    suite = load_suite("smoke", sets=args.set)
    recipe = suite.recipe
    train_images, train_labels = load_split(suite, "train")
    test_images, test_labels = load_split(suite, "test")
    model = VisionTransformer(
        img_size=32, patch_size=4, num_classes=10, embed_dim=64, depth=4, num_heads=2, mlp_ratio=2,
        global_pool="avg", class_token=False, drop_path_rate=recipe.drop_path,
    )
    batches = BatchedRecipe(suite, "cpu")
    steps_per_epoch = batches.steps_per_epoch(len(train_images))
    total, warmup = steps_per_epoch * recipe.epochs, steps_per_epoch * recipe.warmup_epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    floor = recipe.min_lr / recipe.lr

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    print(f"params {sum(p.numel() for p in model.parameters()):,}, torch threads {torch.get_num_threads()}")
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    for epoch in range(recipe.epochs):
        model.train()
        for batch in batches.train_batches(train_images, train_labels, recipe.seed, epoch):
            loss = mixed_cross_entropy(model(batch.x), batch, recipe.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in batches.eval_batches(test_images, test_labels))
        print(
            f"epoch {epoch + 1}/{recipe.epochs}: test accuracy {correct / len(test_images):.3f} "
            f"(wall {time.perf_counter() - start_wall:.0f}s, cpu {time.process_time() - start_cpu:.0f}s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
