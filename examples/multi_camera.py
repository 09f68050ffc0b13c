"""One Detector, several cameras: ``process`` takes one frame per stream and runs the clips that
complete together in one engine batch; each stream keeps its own buffer, state and events.

    python examples/multi_camera.py --artifacts DIR cam1.mp4 rtsp://host/stream 0
"""

from __future__ import annotations

import argparse

import cv2

import edgevad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", required=True)
    ap.add_argument("sources", nargs="+", help="camera indices, files or URLs")
    ap.add_argument("--max-frames", type=int, default=None)
    args = ap.parse_args()

    detector = edgevad.Detector.load(args.artifacts, idle_timeout_s=30.0)
    caps = {f"cam{i}": cv2.VideoCapture(int(s) if s.isdigit() else s)
            for i, s in enumerate(args.sources)}
    peaks = {sid: 0.0 for sid in caps}
    n = 0
    while caps and (args.max_frames is None or n < args.max_frames):
        frames = {}
        for sid, cap in list(caps.items()):
            ok, frame = cap.read()
            if ok:
                frames[sid] = frame
            else:  # this camera ended: score its buffered frames, keep the others going
                for r in detector.flush(sid):
                    peaks[sid] = max(peaks[sid], r.score)
                cap.release()
                del caps[sid]
        for sid, results in detector.process(frames).items():
            for r in results:
                peaks[sid] = max(peaks[sid], r.score)
        n += 1
    for sid in list(caps):
        for r in detector.flush(sid):
            peaks[sid] = max(peaks[sid], r.score)
    for event in detector.events():
        print(f"EVENT {event.stream} frames {event.start}-{event.end} peak {event.peak_score:.3f}")
    for sid, peak in peaks.items():
        print(f"{sid}: peak score {peak:.3f}")


if __name__ == "__main__":
    main()
