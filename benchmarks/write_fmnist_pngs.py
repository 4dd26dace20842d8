"""Write Fashion-MNIST as a user's own image folders (docs/IN-THE-WILD.md).

* ``OUT/unlabeled/shard-XXX/NNNNN.png``: the first ``--train N`` images of lnpt's training
  split (the 54,000 images left after its validation split), in shards of 1,000 that carry no
  class information; the order is the training split's, so a streamed run and an in-memory
  run with ``--train-subset N`` see the same images in the same order.
* ``OUT/eval/<class>/NNNNN.png``: the first ``--test N`` test images, one folder per class,
  named as the shipped teacher's classes (``T-shirt/top`` -> ``T-shirt_top``).

Usage: python benchmarks/write_fmnist_pngs.py --out wild --train 5000 --test 2000
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from lnpt.data import load_data
from lnpt.recipes.wild import class_folder_name


def write(out: Path, train: int, test: int, data_dir: str | None) -> None:
    data = load_data("fashion-mnist", data_dir, train_subset=train, test_subset=None)
    for i, img in enumerate(data.train._images):
        folder = out / "unlabeled" / f"shard-{i // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()).save(folder / f"{i:05d}.png")
    classes = data.info.classes
    for i in range(min(test, len(data.test))):
        folder = out / "eval" / class_folder_name(classes[int(data.test.labels[i])])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.test._images[i, 0].numpy()).save(folder / f"{i:05d}.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder to write unlabeled/ and eval/ into")
    p.add_argument("--train", type=int, default=5000, help="training images written (default: 5000)")
    p.add_argument("--test", type=int, default=2000, help="test images written (default: 2000)")
    p.add_argument("--data-dir", default=None, help="folder holding the Fashion-MNIST files")
    args = p.parse_args()
    write(Path(args.out), args.train, args.test, args.data_dir)


if __name__ == "__main__":
    main()
