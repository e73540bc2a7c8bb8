"""`make demo`: the main job on bundled defaults.

1. generate the synthetic SOR benchmark, variant ``global`` (cached: ``datasets/synsor_global``);
2. train the quick schedule on it (cached: ``output/synsor_tiny/model_final.pth``);
3. evaluate the trained model on the synthetic test split and print the metrics table;
4. rank the objects of the bundled example photos (``demo/examples``) and save colormaps and
   overlays to ``output/demo_examples``.

A first run takes about 15 minutes on 2 CPU cores; later runs reuse the cached data and model.
``--retrain`` forces step 2. To run the same job with a released checkpoint on real data, see the
README ("Evaluate a released checkpoint" and "Terminal demo").
"""

import argparse
import glob
import logging
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join("configs", "quick_schedules", "synsor_tiny.yaml")
DATA_ROOT = "datasets"
OUTPUT = os.path.join("output", "synsor_tiny")
EXAMPLES_OUT = os.path.join("output", "demo_examples")

logger = logging.getLogger("seqrank.run_demo")


def _run(step, cmd, cwd=REPO):
    logger.info("[%s] %s", step, " ".join(cmd))
    start = time.time()
    # The tiny model's ops last microseconds: one OpenMP thread avoids barrier stalls on shared
    # CPUs (docs/QUICK_SCHEDULE.md measured 10x slow-downs with two threads beside another job).
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    subprocess.run(cmd, cwd=cwd, check=True, env=env)
    logger.info("[%s] done in %.0f s", step, time.time() - start)


def generate():
    cmd = [sys.executable, "-m", "scripts.make_synthetic_sor", "--root", DATA_ROOT]
    _run("data", cmd + ["--order", "global", "--name", "synsor_global"])


def train(retrain):
    final = os.path.join(REPO, OUTPUT, "model_final.pth")
    if os.path.isfile(final) and not retrain:
        logger.info("[train] cached model: %s (use --retrain to train again)", final)
        return final
    cmd = [sys.executable, "train_net.py", "--num-gpus", "1", "--config-file", CONFIG]
    _run("train", cmd + ["TEST.EVAL_PERIOD", "0", "OUTPUT_DIR", OUTPUT])
    return final


def evaluate(weights):
    cmd = [sys.executable, "train_net.py", "--eval-only", "--config-file", CONFIG]
    _run("eval", cmd + ["MODEL.WEIGHTS", weights, "OUTPUT_DIR", os.path.join(OUTPUT, "eval")])


def rank_examples(weights):
    images = sorted(glob.glob(os.path.join(REPO, "demo", "examples", "*.jpg")))
    cmd = [sys.executable, "demo.py", "--config-file", os.path.join("..", CONFIG), "--input"]
    cmd += images + [
        "--output",
        os.path.join(REPO, EXAMPLES_OUT),
        "--opts",
        "MODEL.WEIGHTS",
        weights,
    ]
    _run("examples", cmd, cwd=os.path.join(REPO, "demo"))
    logger.info("[examples] colormaps and overlays in %s", EXAMPLES_OUT)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--retrain", action="store_true", help="train again even if cached")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S"
    )
    try:
        generate()
        weights = train(args.retrain)
        evaluate(weights)
        rank_examples(weights)
    except subprocess.CalledProcessError as exc:
        sys.exit(f"error: step failed with exit code {exc.returncode}: {' '.join(exc.cmd)}")


if __name__ == "__main__":
    main()
