"""download(): checksums, truncation, HTTP errors, server down, nothing half-written kept."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import socket
import threading

import pytest

from cnnlab.data.sources import download as dl
from cnnlab.errors import DataError

BODY = bytes(range(256)) * 40  # 10 KiB


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path != "/f.bin":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        # a truncated transfer: announce the whole body, send a part, close
        self.wfile.write(BODY[:1000] if self.server.truncate else BODY)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(truncate: bool = False):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.truncate = truncate
    threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def _only(path):
    return sorted(p.name for p in path.iterdir())


def test_success_verifies_md5_and_sha256(tmp_path):
    dest = tmp_path / "d" / "f.bin"
    with serve() as base:
        dl.download(f"{base}/f.bin", dest, md5=hashlib.md5(BODY).hexdigest(),
                    sha256=hashlib.sha256(BODY).hexdigest(), progress=False)
    assert dest.read_bytes() == BODY and _only(dest.parent) == ["f.bin"]


def test_wrong_checksum_keeps_nothing(tmp_path):
    dest = tmp_path / "f.bin"
    dest_old = tmp_path / "keep.txt"
    dest_old.write_text("untouched")
    with serve() as base, pytest.raises(DataError) as e:
        dl.download(f"{base}/f.bin", dest, sha256="ab" * 32, hint="HINT")
    assert str(e.value).startswith(f"f.bin downloaded from {base}/f.bin is corrupt: sha256 ")
    assert str(e.value).endswith("expected " + "ab" * 32 + f"; nothing was kept at {dest}. HINT")
    assert _only(tmp_path) == ["keep.txt"]


def test_truncated_transfer(tmp_path):
    with serve(truncate=True) as base, pytest.raises(DataError) as e:
        dl.download(f"{base}/f.bin", tmp_path / "f.bin", md5=hashlib.md5(BODY).hexdigest())
    assert f"download of {base}/f.bin was cut off after 1000 of {len(BODY)} bytes" in str(e.value)
    assert _only(tmp_path) == []


def test_http_error_and_server_down(tmp_path):
    with serve() as base, pytest.raises(DataError, match=r"\(the server answered HTTP 404"):
        dl.download(f"{base}/missing.bin", tmp_path / "m.bin")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/f.bin"
    with pytest.raises(DataError) as e:
        dl.download(url, tmp_path / "f.bin", hint="HINT")
    assert str(e.value) == (f"cannot download {url} (connection refused: server down?); "
                            f"expected file {tmp_path / 'f.bin'}. HINT")
    assert _only(tmp_path) == []


def test_fetch_tries_mirrors_and_reports_the_first(tmp_path, monkeypatch):
    monkeypatch.delenv(dl.MIRROR_ENV, raising=False)
    with serve() as base:
        got = dl.fetch("x", "f.bin", ("http://127.0.0.1:9/", f"{base}/"), tmp_path / "f.bin")
        assert got.read_bytes() == BODY
        monkeypatch.setenv(dl.MIRROR_ENV, base + "/mirror/")
        assert dl.source_urls("x", "f.bin", ("http://a/",)) == [f"{base}/mirror/x/f.bin"]
    monkeypatch.delenv(dl.MIRROR_ENV)
    with pytest.raises(DataError, match=r"cannot download http://127.0.0.1:9/g.bin .*"
                                        r"\(also tried http://127.0.0.1:9/b/g.bin\)"):
        dl.fetch("x", "g.bin", ("http://127.0.0.1:9/", "http://127.0.0.1:9/b/"),
                 tmp_path / "g.bin")


def test_progress_auto_follows_the_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    from cnnlab.utils.progress import progress_enabled  # the rule download.py follows

    assert progress_enabled(None) is False and progress_enabled(True) is True
