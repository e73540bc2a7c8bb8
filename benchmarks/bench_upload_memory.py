"""Memory of the web demo under concurrent large uploads (docs/SECURITY.md).

    python -m benchmarks.bench_upload_memory [--uploads 20] [--side 6000]

Posts ``--uploads`` copies of a ``--side`` x ``--side`` PNG (one colour: a small file that decodes
to side^2 x 3 bytes) at once to ``online.app`` through Flask's test client, with a stand-in
predictor (two fixed masks; the model is not what is measured), and prints the process's resident
memory before, at its peak and afterwards. Run it in a fresh process: the peak is the process's
high-water mark.
"""

import argparse
import io
import threading

import numpy as np
from PIL import Image

import online.app as web


def _fake_predictor(image_rgb, image_name=0):
    height, width = image_rgb.shape[:2]
    first = np.zeros((height, width), np.float32)
    first[: height // 2] = 1
    return {
        "image_name": image_name,
        "masks": [first, 1 - first],
        "bboxes": [[0.0, 0.0, width, height / 2], [0.0, height / 2, width, height]],
        "scores": [0.9, 0.4],
        "saliency": [0.8, 0.3],
        "num": 2,
    }


def _memory_gb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024**2
    return float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=20, help="concurrent uploads (20)")
    parser.add_argument("--side", type=int, default=6000, help="image side in pixels (6000)")
    parser.add_argument(
        "--max-decodes", type=int, default=web.MAX_CONCURRENT_DECODES, help="the app's limit"
    )
    args = parser.parse_args(argv)
    buffer = io.BytesIO()
    Image.new("RGB", (args.side, args.side), (10, 200, 30)).save(buffer, "PNG")
    data = buffer.getvalue()
    web.return_large_buffers_to_the_os()
    app = web.create_app(_fake_predictor, max_decodes=args.max_decodes)
    before = _memory_gb("VmRSS")
    statuses = []

    def upload():
        response = app.test_client().post(
            "/api/rank",
            data={"file": (io.BytesIO(data), "big.png")},
            content_type="multipart/form-data",
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=upload) for _ in range(args.uploads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(
        f"{args.uploads} concurrent uploads of a {len(data) / 1e3:.0f} KB {args.side} x "
        f"{args.side} PNG, {args.max_decodes} decodes at once: HTTP {sorted(set(statuses))}; "
        f"resident memory {before:.2f} GB before, {_memory_gb('VmHWM'):.2f} GB peak, "
        f"{_memory_gb('VmRSS'):.2f} GB after"
    )


if __name__ == "__main__":
    main()
