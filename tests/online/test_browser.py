"""Browser demo end to end: launch.sh serves the tiny parity model, headless Chromium uses the page.

Writes a screenshot to artifacts/web_demo.png (and docs/web_demo.png with SEQRANK_UPDATE_DOCS=1).
"""

import base64
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXAMPLE = "demo/examples/chelsea.jpg"
# Records whether the spinner was shown with the button disabled, however short the request was.
WATCH_BUSY = """() => {
  window.sawBusy = false;
  const busy = document.getElementById("busy");
  const button = document.getElementById("rank-button");
  new MutationObserver(() => {
    if (!busy.hidden && button.disabled) {
      window.sawBusy = true;
    }
  }).observe(busy, { attributes: true });
}"""

# Outside CI a developer without Chromium may skip this test; in CI (CI=true) it must run.
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
    reason=f"{CHROMIUM} is not installed (tools/bootstrap.sh --dev adds it)",
)
from playwright import sync_api  # noqa: E402

# The server logs this once its socket is bound; with --port 0 the OS chose the port.
SERVING = re.compile(r"open (http://127\.0\.0\.1:\d+) in a browser")


def _wait_until_serving(proc, log_path, timeout=300):
    """The URL the server logged, once it answers there."""
    deadline = time.monotonic() + timeout
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        if url is None:
            match = SERVING.search(log_path.read_text())
            url = match.group(1) + "/" if match else None
        if url is not None:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return url
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
        time.sleep(0.3)
    pytest.fail(f"the server did not answer within {timeout}s:\n{log_path.read_text()[-3000:]}")


@pytest.fixture
def server(repo_root, parity_dir, tmp_path):
    """``sh launch.sh`` with the parity checkpoint, whose config.yaml lies beside it (found
    without SEQRANK_CONFIG), on a port the OS picks when the server binds (``--port 0``, so no
    other process can take it in between); always stopped."""
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("SEQRANK_CONFIG", None)
    command = ["sh", "launch.sh", str(parity_dir / "checkpoint.pth"), "--port", "0"]
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            command, cwd=repo_root, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield _wait_until_serving(proc, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _save_screenshot(page, repo_root):
    artifacts = repo_root / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "web_demo.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("SEQRANK_UPDATE_DOCS") == "1":
        (repo_root / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, repo_root / "docs" / "web_demo.png")


# Per table row: the swatch's colour and the overlay's pixel just inside that rank's label box
# (the API's label_box, fetched again for the same upload).
LABEL_COLOURS = """async (file) => {
  const body = new FormData();
  body.append("file", new Blob([Uint8Array.from(atob(file), c => c.charCodeAt(0))]), "x.jpg");
  const data = await (await fetch("/api/rank", { method: "POST", body })).json();
  const img = new Image();
  img.src = "data:image/png;base64," + data.overlay_png_base64;
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const swatches = Array.from(document.querySelectorAll("#ranking-table .swatch"));
  return data.objects.filter(o => o.label_box).map(o => {
    const px = ctx.getImageData(o.label_box[0] + 1, o.label_box[1] + 1, 1, 1).data;
    return [getComputedStyle(swatches[o.rank - 1]).backgroundColor,
            `rgb(${px[0]}, ${px[1]}, ${px[2]})`];
  });
}"""


def _check_label_colours_match_swatches(page, repo_root):
    with open(repo_root / EXAMPLE, "rb") as f:
        encoded = base64.b64encode(f.read()).decode("ascii")
    pairs = page.evaluate(LABEL_COLOURS, encoded)
    assert len(pairs) >= 2
    for swatch, label in pairs:
        assert swatch == label


def test_upload_rank_and_show_results(server, repo_root):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(server)
            page.set_input_files("#file-input", str(repo_root / EXAMPLE))
            page.evaluate(WATCH_BUSY)
            page.click("#rank-button")

            page.wait_for_selector("#ranking-table tbody tr", timeout=90_000)
            rows = page.locator("#ranking-table tbody tr")
            assert rows.count() > 0
            assert rows.first.locator("td").first.inner_text() == "1"
            assert page.is_visible("#colormap-image") and page.is_visible("#overlay-image")
            natural = "document.getElementById('%s').naturalWidth"
            assert page.evaluate(natural % "colormap-image") == 451
            assert page.evaluate(natural % "overlay-image") == 451
            assert page.evaluate(natural % "input-image") == 451
            assert page.evaluate("window.sawBusy"), "no busy state while the model ran"
            assert "Ranking" in page.text_content("#busy")
            page.wait_for_selector("#busy", state="hidden", timeout=5000)
            assert page.is_enabled("#rank-button")
            _save_screenshot(page, repo_root)
            _check_label_colours_match_swatches(page, repo_root)
            assert page.inner_text("#model-checkpoint").endswith("checkpoint.pth")
            assert "config.yaml beside the checkpoint" in page.inner_text("#model-config")
            assert page.inner_text("#model-datasets") == "assr_train"
            assert not page.is_visible("#synthetic-warning")
            page.click("#overlay-image")
            assert "enlarged" in page.get_attribute("#overlay-image >> xpath=..", "class")

            text_file = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}
            page.set_input_files("#file-input", files=[text_file])
            page.click("#rank-button")
            page.wait_for_selector("#error", state="visible", timeout=30_000)
            assert "not an image" in page.inner_text("#error")
        finally:
            browser.close()
