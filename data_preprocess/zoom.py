"""Write the built-in tool task (verlvl/zoom: "what colour is the mark in the <corner>?") and its tool config."""

from __future__ import annotations

import argparse
import os

from verlvl.data.zoom_task import write


def main(argv=None) -> dict[str, str]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--local_save_dir", default=os.path.join("~", "data", "verlvl_zoom"))
    parser.add_argument("--num_train", type=int, default=512)
    parser.add_argument("--num_test", type=int, default=64)
    parser.add_argument("--image_size", type=int, default=112)
    parser.add_argument("--mark", type=int, default=4, help="side of each mark in pixels")
    parser.add_argument("--zoom_size", type=int, default=112, help="longer side of the zoom tool's crop")
    parser.add_argument("--short_prompt", action="store_true", help="a one-line tool description (CPU runs)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = write(args.local_save_dir, args.num_train, args.num_test, args.seed, args.image_size, args.mark,
                args.zoom_size, args.short_prompt)
    print(f"wrote {out}; train with actor_rollout_ref.rollout.multi_turn.enable=true "
          f"actor_rollout_ref.rollout.multi_turn.tool_config_path={out['tool_config']} data.return_raw_chat=true")
    return out


if __name__ == "__main__":
    main()
