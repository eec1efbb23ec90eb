"""Write the built-in image task (verlvl/shapes: "what colour is the shape?") as train/test parquet."""

from __future__ import annotations

import argparse
import os

from verlvl.data.shapes_task import write


def main(argv=None) -> dict[str, str]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--local_save_dir", default=os.path.join("~", "data", "verlvl_shapes"))
    parser.add_argument("--num_train", type=int, default=512)
    parser.add_argument("--num_test", type=int, default=64)
    parser.add_argument("--num_colors", type=int, default=2)
    parser.add_argument("--image_size", type=int, default=56)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = write(args.local_save_dir, args.num_train, args.num_test, args.num_colors, args.seed, args.image_size)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
