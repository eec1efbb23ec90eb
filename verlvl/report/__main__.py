"""`python -m verlvl.report RUN_DIR`: writes RUN_DIR/report.html (plots, config, samples with their images)."""

from __future__ import annotations

import argparse
import sys

from verlvl.report.build import DEFAULT_MAX_STEPS, DEFAULT_SAMPLES_PER_STEP, ReportError, write_report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verlvl.report", description=__doc__)
    parser.add_argument("run_dir", help="trainer.default_local_dir of a run (metrics.jsonl, plots/, config.yaml, "
                                        "samples/)")
    parser.add_argument("--out", default=None, help="the HTML file to write (default: RUN_DIR/report.html)")
    parser.add_argument("--samples-per-step", type=int, default=DEFAULT_SAMPLES_PER_STEP,
                        help="samples shown per logged step and split (default: %(default)s)")
    parser.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS,
                        help="logged steps shown per split, evenly spaced with the first and last (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.run_dir, out=args.out, samples_per_step=args.samples_per_step,
                            max_steps=args.max_steps)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
