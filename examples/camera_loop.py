"""Embed edgevad in a camera loop: frames in, an event callback out.

    python examples/camera_loop.py --artifacts DIR --source 0            # first camera
    python examples/camera_loop.py --artifacts DIR --source clip.mp4     # or a file / rtsp URL

Every frame goes to ``Detector.push``; scores come back a clip later (see ``latency_frames``).
The callback fires when an anomaly event closes (threshold with hysteresis, minimum length).
"""

from __future__ import annotations

import argparse
import time

import cv2

import edgevad


def on_event(event: edgevad.AnomalyEvent) -> None:
    label = f" ({event.label})" if event.label else ""
    print(f"EVENT frames {event.start}-{event.end}{label}: peak {event.peak_score:.3f} "
          f"at frame {event.peak_frame}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", required=True, help="exported model folder")
    ap.add_argument("--source", default="0", help="camera index, video file or URL")
    ap.add_argument("--max-frames", type=int, default=None)
    args = ap.parse_args()

    detector = edgevad.Detector.load(args.artifacts, on_event=on_event)
    print(f"scores arrive {detector.latency_frames[0]}-{detector.latency_frames[1]} frames late")
    cap = cv2.VideoCapture(int(args.source) if args.source.isdigit() else args.source)
    if not cap.isOpened():
        raise SystemExit(f"cannot open {args.source}")
    t0, n, last = time.monotonic(), 0, None
    try:
        while args.max_frames is None or n < args.max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            for result in detector.push(frame, stream="cam", timestamp=time.monotonic() - t0):
                last = result
            n += 1
    except KeyboardInterrupt:
        pass
    finally:
        cap.release()
    for result in detector.flush("cam"):  # the end of the stream: score what is buffered
        last = result
    if last is not None:
        print(f"{n} frames, last score {last.score:.3f} (frame {last.index})")


if __name__ == "__main__":
    main()
