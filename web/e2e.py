#!/usr/bin/env python3
"""End-to-end test of the browser page: the same checkpoint and image through native
`lskbb predict --json` and through web/index.html in headless Chromium on WebGPU, driven
over WebDriver (chromedriver); the probabilities must agree within 1e-4, and the page must
show the explanation picture (Grad-CAM and LSK masks, computed in the browser).

Needs web/pkg (web/build.sh), the release binary (cargo build --release) and Debian's
chromium and chromium-driver. Python's standard library only. Prints `1 passed, 0 failed`
or `0 passed, 1 failed` last and exits 0 or 1.

  python3 web/e2e.py [--screenshot FILE]
"""

import argparse
import base64
import functools
import http.server
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Same model, same preprocessing; the browser's adapter (SwiftShader) sums in another order
# than lavapipe and has no subgroups, so other kernels run: rounding differences only.
TOLERANCE = 1e-4
# SwiftShader is a CPU rasteriser: building the pipelines and one forward take a while.
TIMEOUT_S = 600


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_png(path, w, h):
    """An RGB test image: a diagonal gradient with a bright disc (no imaging library)."""
    rows = []
    for y in range(h):
        row = bytearray([0])
        for x in range(w):
            disc = (x - w * 0.6) ** 2 + (y - h * 0.4) ** 2 < (h * 0.25) ** 2
            row += bytes([255 if disc else (7 * x) % 256, (5 * y) % 256, (3 * (x + y)) % 256])
        rows.append(bytes(row))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r.stdout


class WebDriver:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        self.session = None

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read() or b"{}").get("value")

    def start(self, user_data_dir):
        args = ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--window-size=820,1400",
                "--enable-features=Vulkan", "--use-vulkan=swiftshader", "--use-angle=vulkan",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                f"--user-data-dir={user_data_dir}"]
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def js(self, script):
        return self.call("POST", f"/session/{self.session}/execute/sync",
                         {"script": script, "args": []})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--screenshot", help="save the page as a PNG here when done")
    ap.add_argument("--lskbb", default=os.path.join(ROOT, "target/release/lskbb"))
    a = ap.parse_args()
    pkg = os.path.join(ROOT, "web/pkg/lskbb_web_bg.wasm")
    for need in (a.lskbb, pkg, "/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not os.path.exists(need):
            raise RuntimeError(f"{need} is missing (build with cargo build --release and "
                               "web/build.sh; apt-get install chromium chromium-driver)")
    tmp = tempfile.mkdtemp(prefix="lskbb-web-e2e-")
    procs = []
    try:
        # A small model trained for one epoch on the built-in synthetic set, and a test image.
        run([a.lskbb, "train", "--epochs", "1", "--batch-size", "4", "--image-size", "16",
             "--synthetic-per-class", "12", "--test-per-class", "2", "--out",
             os.path.join(tmp, "run")])
        site = os.path.join(tmp, "site")
        shutil.copytree(os.path.join(ROOT, "web"), site,
                        ignore=shutil.ignore_patterns("src", "target", "*.py", "*.sh", "*.toml"))
        shutil.copy(os.path.join(tmp, "run/best.safetensors"), os.path.join(site, "model.safetensors"))
        write_png(os.path.join(site, "image.png"), 40, 32)
        want = json.loads(run([a.lskbb, "predict", "--checkpoint",
                               os.path.join(site, "model.safetensors"), "--json",
                               os.path.join(site, "image.png")]).strip())

        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=site)
        handler.func.extensions_map[".wasm"] = "application/wasm"
        handler.func.extensions_map[".js"] = "text/javascript"
        handler.func.log_message = lambda *args: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()

        port = free_port()
        procs.append(subprocess.Popen(["/usr/bin/chromedriver", f"--port={port}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wd = WebDriver(port)
        for _ in range(100):
            try:
                wd.call("GET", "/status")
                break
            except OSError:
                time.sleep(0.1)
        wd.start(os.path.join(tmp, "profile"))
        url = (f"http://localhost:{server.server_address[1]}/index.html"
               "?checkpoint=model.safetensors&image=image.png")
        wd.call("POST", f"/session/{wd.session}/url", {"url": url})
        start = time.time()
        while True:
            state, status, result, picture = wd.js(
                "return [document.body.dataset.state || '', "
                "document.getElementById('status').textContent, "
                "document.getElementById('result').textContent, "
                "document.getElementById('explanation').naturalWidth]")
            if state or time.time() - start > TIMEOUT_S:
                break
            time.sleep(1)
        if a.screenshot:
            shot = wd.call("GET", f"/session/{wd.session}/screenshot")
            with open(a.screenshot, "wb") as f:
                f.write(base64.b64decode(shot))
        console = wd.call("POST", f"/session/{wd.session}/se/log", {"type": "browser"}) or []
        wd.call("DELETE", f"/session/{wd.session}")
        server.shutdown()
        print(f"browser: {status} ({time.time() - start:.1f} s)")
        if state != "done":
            for line in console:
                print(f"console: {line.get('level')}: {line.get('message')}", file=sys.stderr)
            raise RuntimeError(f"the page did not finish (state '{state}'): {status}")
        got = json.loads(result)
        print(f"native:  {want['class']} {want['probabilities']}")
        print(f"browser: {got['class']} {got['probabilities']}")
        worst = max(abs(got["probabilities"][c] - v) for c, v in want["probabilities"].items())
        if got["probabilities"].keys() != want["probabilities"].keys() or worst > TOLERANCE:
            raise RuntimeError(f"probabilities differ by {worst:.2e} (tolerance {TOLERANCE})")
        print(f"largest difference {worst:.2e} (tolerance {TOLERANCE})")
        if not picture:
            raise RuntimeError("the explanation picture was not shown")
        print(f"explanation picture {picture} px wide")
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
        print("1 passed, 0 failed")
    except Exception as e:  # the one test failed: say why, then the closing line
        print(f"web end-to-end test failed: {e}", file=sys.stderr)
        print("0 passed, 1 failed")
        sys.exit(1)
