"""Browser demo back end (online/app.py) through Flask's test client, and launch.sh's arguments."""

import base64
import io
import os
import struct
import subprocess
import tempfile
import threading
import time
import zlib

import numpy as np
import pycocotools.mask as mask_util
import pytest
from PIL import Image

import online.app as app_module
from online.app import create_app, decode_upload
from seqrank.utils.visualize import ranked_objects

EXAMPLE = "demo/examples/chelsea.jpg"


@pytest.fixture(scope="module")
def tiny_predictor(parity_dir):
    from seqrank.engine.setup import build_cfg, fit_to_machine
    from seqrank.predictor import SeqRankPredictor

    opts = ["MODEL.WEIGHTS", str(parity_dir / "checkpoint.pth")]
    cfg = build_cfg(str(parity_dir / "config.yaml"), opts)
    fit_to_machine(cfg)
    return SeqRankPredictor(cfg)


@pytest.fixture(scope="module")
def tiny_app(tiny_predictor):
    return create_app(tiny_predictor)


@pytest.fixture(scope="module")
def client(tiny_app):
    return tiny_app.test_client()


class FakePredictor:
    """Two fixed objects; records the image sizes it was called with."""

    def __init__(self):
        self.shapes = []

    def __call__(self, image_rgb, image_name=0):
        height, width = image_rgb.shape[:2]
        self.shapes.append((height, width))
        first = np.zeros((height, width), np.float32)
        first[: height // 2] = 1
        second = np.zeros((height, width), np.float32)
        second[height // 2 :, : width // 2] = 1
        return {
            "image_name": image_name,
            "masks": [first, second],
            "bboxes": [[0.0, 0.0, width, height / 2], [0.0, height / 2, width / 2, height]],
            "scores": [0.9, 0.4],
            "saliency": [0.8, 0.3],
            "num": 2,
        }


def _png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _post(client, url="/api/rank", data=None, name="image.jpg", field="file"):
    payload = {field: (io.BytesIO(data), name)}
    return client.post(url, data=payload, content_type="multipart/form-data")


def _decode_png(b64):
    return np.array(Image.open(io.BytesIO(base64.b64decode(b64))))


def test_get_index_page(client):
    response = client.get("/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'name="file"' in page and 'id="rank-button"' in page and "/api/rank" in page
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_api_rank_with_tiny_model(client, repo_root):
    data = (repo_root / EXAMPLE).read_bytes()
    response = _post(client, data=data)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["image"]["height"] == 300 and body["image"]["width"] == 451
    objects = body["objects"]
    assert objects, "the tiny parity model ranks some objects on a natural image"
    assert [o["rank"] for o in objects] == list(range(1, len(objects) + 1))
    for obj in objects:
        assert len(obj["bbox"]) == 4
        assert 0.0 <= obj["objectness"] <= 1.0 and 0.0 <= obj["saliency"] <= 1.0
        assert obj["mask"]["size"] == [300, 451] and isinstance(obj["mask"]["counts"], str)
    first = {"size": objects[0]["mask"]["size"], "counts": objects[0]["mask"]["counts"].encode()}
    assert mask_util.decode(first).shape == (300, 451)
    assert objects[0]["color"] == "#ea573d"
    assert _decode_png(body["colormap_png_base64"]).shape == (300, 451, 3)
    assert _decode_png(body["overlay_png_base64"]).shape == (300, 451, 3)


def test_form_post_renders_results_without_javascript(repo_root):
    client = create_app(FakePredictor()).test_client()
    response = _post(client, url="/", data=(repo_root / EXAMPLE).read_bytes())
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert page.count("<tr>") == 3  # header + 2 objects
    assert "data:image/png;base64," in page and "data:image/jpeg;base64," in page
    assert "0.9000" in page and "0.3000" in page


def test_form_post_error_is_shown_on_the_page():
    client = create_app(FakePredictor()).test_client()
    response = _post(client, url="/", data=b"not an image")
    assert response.status_code == 415
    assert "not an image" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "kwargs, status, words",
    [
        ({"field": "image", "data": b"\xff\xd8"}, 400, "field 'file'"),
        ({"data": b""}, 400, "empty"),
        ({"data": b"GIF89a but not really", "name": "x.gif"}, 415, "image"),
        ({"data": b"hello, I am text", "name": "notes.txt"}, 415, "supported format"),
        ({"data": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"}, 415, "format"),
    ],
)
def test_api_rank_rejects_bad_uploads(kwargs, status, words):
    predictor = FakePredictor()
    client = create_app(predictor).test_client()
    response = _post(client, **kwargs)
    assert response.status_code == status
    assert words in response.get_json()["error"]
    assert predictor.shapes == []


def test_api_rank_rejects_truncated_image(repo_root):
    data = (repo_root / EXAMPLE).read_bytes()
    response = _post(create_app(FakePredictor()).test_client(), data=data[: len(data) // 3])
    assert response.status_code == 415
    assert "truncated" in response.get_json()["error"]


def test_api_rank_without_multipart_body():
    client = create_app(FakePredictor()).test_client()
    response = client.post("/api/rank", json={"file": "abc"})
    assert response.status_code == 400
    assert "multipart/form-data" in response.get_json()["error"]


def test_api_rank_oversized_upload_is_413_json():
    client = create_app(FakePredictor(), max_upload_mb=0.01).test_client()
    response = _post(client, data=b"\0" * 20_000)
    assert response.status_code == 413
    assert "0.01 MB" in response.get_json()["error"]


def test_api_rank_too_many_pixels_is_413():
    client = create_app(FakePredictor(), max_pixels=100).test_client()
    response = _post(client, data=_png_bytes(np.zeros((20, 20, 3), np.uint8)))
    assert response.status_code == 413
    assert "pixels" in response.get_json()["error"]


def test_api_rank_wrong_method_is_405_json():
    response = create_app(FakePredictor()).test_client().get("/api/rank")
    assert response.status_code == 405
    assert "POST" in response.get_json()["error"]
    assert "POST" in response.headers["Allow"]


def test_unknown_api_path_is_404_json():
    response = create_app(FakePredictor()).test_client().post("/api/nothing")
    assert response.status_code == 404
    assert response.get_json()["error"]


def test_predictor_failure_is_500_json():
    def broken(image_rgb, image_name=0):
        raise RuntimeError("boom")

    app = create_app(broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = _post(app.test_client(), data=_png_bytes(np.zeros((8, 8, 3), np.uint8)))
    assert response.status_code == 500
    assert "internal error" in response.get_json()["error"]


def test_model_ranks_full_resolution_and_only_the_display_is_downscaled():
    predictor = FakePredictor()
    client = create_app(predictor, max_side=100).test_client()
    response = _post(client, data=_png_bytes(np.zeros((150, 400, 3), np.uint8)))
    assert response.status_code == 200
    assert predictor.shapes == [(150, 400)]
    payload = response.get_json()
    image = payload["image"]
    assert (image["height"], image["width"]) == (150, 400)
    assert (image["original_height"], image["original_width"]) == (150, 400)
    assert (image["display_height"], image["display_width"]) == (38, 100)
    first = payload["objects"][0]
    assert first["mask"]["size"] == [150, 400] and first["bbox"] == [0.0, 0.0, 400.0, 75.0]
    colormap = np.array(Image.open(io.BytesIO(base64.b64decode(payload["colormap_png_base64"]))))
    overlay = Image.open(io.BytesIO(base64.b64decode(payload["overlay_png_base64"])))
    assert colormap.shape == (38, 100, 3) and overlay.size == (100, 38)
    # Rank 1 (top half) in RGB (234, 87, 61), rank 2 (bottom-left quarter) in (251, 192, 99).
    assert tuple(colormap[5, 50]) == (234, 87, 61) and tuple(colormap[30, 20]) == (251, 192, 99)
    assert tuple(colormap[30, 80]) == (0, 0, 0)


def test_upload_ranked_like_the_full_image(tiny_predictor):
    """Same objects as the predictor on the full-resolution image (the original web demo)."""
    rng = np.random.default_rng(3)
    pixels = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    data = _png_bytes(pixels)
    response = _post(create_app(tiny_predictor, max_side=64).test_client(), data=data)
    assert response.status_code == 200
    expected = ranked_objects(tiny_predictor(decode_upload(data), "upload"))
    got = response.get_json()["objects"]
    assert [o["mask"] for o in got] == [o["mask"] for o in expected] and len(got) > 0
    np.testing.assert_allclose([o["bbox"] for o in got], [o["bbox"] for o in expected])


def test_uploads_stay_in_memory(monkeypatch):
    def no_temp_files(*args, **kwargs):
        raise AssertionError("an upload was spooled to a temporary file")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_temp_files)
    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", no_temp_files)
    noise = (np.random.default_rng(1).random((400, 600, 3)) * 255).astype(np.uint8)
    data = _png_bytes(noise)
    assert len(data) > 600_000  # werkzeug spools parts above 500 kB to disk by default
    response = _post(create_app(FakePredictor()).test_client(), data=data, name="noise.png")
    assert response.status_code == 200


def test_decode_upload_applies_exif_orientation():
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (40, 20), (200, 10, 10)).save(buffer, format="JPEG", exif=exif)
    assert decode_upload(buffer.getvalue()).shape == (40, 20, 3)


def test_concurrent_requests_with_tiny_model(tiny_app):
    # Each thread has its own test client (a client is not meant to be shared by threads); every
    # answer equals the one of a request made alone.
    small = _png_bytes((np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8))
    alone = _post(tiny_app.test_client(), data=small, name="small.png")
    assert alone.status_code == 200
    answers = [None] * 3

    def worker(index):
        answers[index] = _post(tiny_app.test_client(), data=small, name="small.png")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(a.get_json() == alone.get_json() for a in answers)


class BlockingPredictor(FakePredictor):
    """Holds each call until the test releases it; records how many calls overlapped."""

    def __init__(self):
        super().__init__()
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self.active = self.max_active = 0
        self._count_lock = threading.Lock()

    def __call__(self, image_rgb, image_name=0):
        with self._count_lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        self.entered.release()
        assert self.release.wait(timeout=60)
        with self._count_lock:
            self.active -= 1
        return super().__call__(image_rgb, image_name)


def test_inference_is_serialised(monkeypatch):
    # The first request is held inside the model. The second one has decoded its upload (the
    # last step before the model lock) and must then wait: with a lock missing, it would enter
    # the model while the first one is still held there, however the threads are scheduled.
    import online.app

    predictor = BlockingPredictor()
    app = create_app(predictor)
    data = _png_bytes(np.zeros((16, 16, 3), np.uint8))
    decoded = threading.Semaphore(0)

    def decode_and_signal(*args, **kwargs):
        image = decode_upload(*args, **kwargs)
        decoded.release()
        return image

    monkeypatch.setattr(online.app, "decode_upload", decode_and_signal)
    statuses = []

    def worker():
        statuses.append(_post(app.test_client(), data=data, name="x.png").status_code)

    first, second = threading.Thread(target=worker), threading.Thread(target=worker)
    try:
        first.start()
        assert predictor.entered.acquire(timeout=60)
        second.start()
        assert decoded.acquire(timeout=60) and decoded.acquire(timeout=60)
        # Without the lock the second call is in the model within microseconds; 3 s is ample.
        # (A correct program passes whatever the timing.)
        assert not predictor.entered.acquire(timeout=3)
        assert predictor.max_active == 1
    finally:
        predictor.release.set()
        first.join(timeout=60)
        second.join(timeout=60)
    assert statuses == [200, 200]
    assert predictor.entered.acquire(timeout=0)  # the second call ran once the first was done
    assert predictor.max_active == 1


def _png_header(width, height):
    """A PNG that declares width x height pixels but holds almost nothing (a decompression bomb's
    header: what the server must refuse before decoding)."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


@pytest.mark.parametrize("side", [8000, 20000])  # 64 Mpx (our limit), 400 Mpx (Pillow's too)
def test_api_rank_over_size_headers_are_413_before_decoding(side):
    client = create_app(FakePredictor()).test_client()
    response = _post(client, data=_png_header(side, side), name="bomb.png")
    assert response.status_code == 413
    assert "pixels" in response.get_json()["error"]


def test_16bit_upload_is_scaled_not_saturated():
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    rgb = decode_upload(_png_bytes(values))
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 1, 128, 255])


def test_at_most_two_uploads_decode_at_once(monkeypatch):
    state = {"active": 0, "peak": 0, "done": 0}
    changed = threading.Condition()
    real_decode = app_module.decode_upload

    def decode_in_company(data, max_pixels):
        # Each decode waits until a second one runs beside it (or the others are done), then
        # lingers: without the limit, more uploads would pile in meanwhile.
        with changed:
            state["active"] += 1
            state["peak"] = max(state["peak"], state["active"])
            changed.notify_all()
            changed.wait_for(lambda: state["active"] >= 2 or state["done"] >= 5, timeout=30)
        time.sleep(0.05)
        with changed:
            state["active"] -= 1
            state["done"] += 1
            changed.notify_all()
        return real_decode(data, max_pixels)

    monkeypatch.setattr(app_module, "decode_upload", decode_in_company)
    app = create_app(FakePredictor())
    data = _png_bytes(np.zeros((16, 16, 3), np.uint8))
    statuses = []

    def worker():
        statuses.append(_post(app.test_client(), data=data, name="x.png").status_code)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert statuses == [200] * 6 and state["peak"] == 2


def test_upload_waiting_too_long_for_a_decode_is_503(monkeypatch):
    monkeypatch.setattr(app_module, "DECODE_WAIT_S", 0.01)
    app = create_app(FakePredictor(), max_decodes=1)
    entered, release = threading.Event(), threading.Event()
    real_decode = app_module.decode_upload

    def held_decode(data, max_pixels):
        entered.set()
        release.wait(30)
        return real_decode(data, max_pixels)

    monkeypatch.setattr(app_module, "decode_upload", held_decode)
    data = _png_bytes(np.zeros((16, 16, 3), np.uint8))
    first = threading.Thread(target=lambda: _post(app.test_client(), data=data))
    first.start()
    assert entered.wait(30)
    response = _post(app.test_client(), data=data)
    release.set()
    first.join(timeout=30)
    assert response.status_code == 503 and "busy" in response.get_json()["error"]


def test_an_upload_holds_its_slot_until_ranked(monkeypatch):
    """The model ranks full-resolution images: an upload waiting for or inside the model still
    counts against --max-concurrent-decodes, so full-size images never pile up."""
    monkeypatch.setattr(app_module, "DECODE_WAIT_S", 0.01)
    predictor = BlockingPredictor()
    app = create_app(predictor, max_decodes=1)
    data = _png_bytes(np.zeros((16, 16, 3), np.uint8))
    statuses = []
    first = threading.Thread(target=lambda: statuses.append(_post(app.test_client(), data=data)))
    first.start()
    try:
        assert predictor.entered.acquire(timeout=60)
        response = _post(app.test_client(), data=data)
    finally:
        predictor.release.set()
        first.join(timeout=60)
    assert response.status_code == 503 and "busy" in response.get_json()["error"]
    assert [r.status_code for r in statuses] == [200]
    assert _post(app.test_client(), data=data).status_code == 200  # the slot was given back


@pytest.mark.parametrize("env_config", [None, "my.yaml"])
def test_launch_sh_passes_flags_and_leaves_the_config_to_python(repo_root, tmp_path, env_config):
    """The config follows the checkpoint in Python (seqrank.config_resolution); launch.sh only
    makes a relative SEQRANK_CONFIG absolute before it changes directory."""
    checkpoint = tmp_path / "seqrank_irsr_swinL_correct_ckp.pth"
    checkpoint.write_bytes(b"")
    script = tmp_path / "show.sh"
    script.write_text('#!/bin/sh\necho "SEQRANK_CONFIG=${SEQRANK_CONFIG:-}" "$@"\n')
    script.chmod(0o755)
    env = dict(os.environ, PYTHON=str(script))
    env.pop("SEQRANK_CONFIG", None)
    if env_config:
        env["SEQRANK_CONFIG"] = env_config
    command = ["sh", str(repo_root / "launch.sh"), str(checkpoint), "--port", "12345"]
    out = subprocess.run(
        command, env=env, capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout
    args = out.split()
    expected = str(tmp_path / env_config) if env_config else ""
    assert args[0] == f"SEQRANK_CONFIG={expected}"
    assert args[1:3] == ["-m", "online.app"] and "--config-file" not in args
    assert args[args.index("--port") + 1] == "12345"
    assert args[-3:] == ["--opts", "MODEL.WEIGHTS", str(checkpoint)]


def test_launch_sh_reports_missing_checkpoint(repo_root, tmp_path):
    command = ["sh", str(repo_root / "launch.sh"), str(tmp_path / "absent.pth")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 1
    assert "checkpoint not found" in result.stderr


def test_page_shows_the_model_in_use(tiny_app, parity_dir):
    page = tiny_app.test_client().get("/").get_data(as_text=True)
    assert str(parity_dir / "checkpoint.pth") in page
    assert 'id="model-datasets">assr_train<' in page
    assert "not meaningful" not in page


def test_page_warns_about_a_synthetic_model(repo_root):
    from seqrank.engine.setup import build_cfg

    predictor = FakePredictor()
    predictor.cfg = build_cfg(str(repo_root / "configs" / "quick_schedules" / "synsor_tiny.yaml"))
    page = create_app(predictor).test_client().get("/").get_data(as_text=True)
    assert 'id="synthetic-warning"' in page and "synsor_global_train" in page
    assert "its ranks on photos are not meaningful" in page


def test_favicon_is_served():
    response = create_app(FakePredictor()).test_client().get("/favicon.ico")
    assert response.status_code == 200 and b"<svg" in response.data


def test_api_objects_carry_their_label_box_in_the_rank_colour():
    app = create_app(FakePredictor())
    data = _png_bytes(np.full((200, 300, 3), 128, np.uint8))
    payload = _post(app.test_client(), data=data).get_json()
    overlay = _decode_png(payload["overlay_png_base64"])
    for obj in payload["objects"]:
        x1, y1, x2, y2 = obj["label_box"]
        assert 0 <= x1 < x2 <= 300 and 0 <= y1 < y2 <= 200
        corner = overlay[y1 + 1, x1 + 1]
        assert "#%02x%02x%02x" % tuple(int(c) for c in corner[:3]) == obj["color"]
