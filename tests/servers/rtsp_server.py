"""A real RTSP server for tests: GStreamer's gst-rtsp-server serving MP4 (H.264) files.

Run with the system Python, which has the GObject bindings (Debian: python3-gi,
gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good/bad):

    /usr/bin/python3 tests/servers/rtsp_server.py --port 8554 --mount /cam1=clip.mp4 [--mount ...] [--audio /cam1]

Each client gets its own pipeline from the start of the file, paced at real time. A mount named by
``--audio`` also sends the file's AAC track (RTP MPEG4-GENERIC, as cameras with a microphone do).
Prints "ready PORT" once listening.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402 -- after gi.require_version, as gi demands


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", action="append", required=True, help="/path=file.mp4")
    parser.add_argument("--audio", action="append", default=[], help="a mount whose AAC track is sent too")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for spec in args.mount:
        path, clip = spec.split("=", 1)
        factory = GstRtspServer.RTSPMediaFactory()
        if path in args.audio:
            factory.set_launch(
                f"( filesrc location={clip} ! qtdemux name=d d.video_0 ! queue ! h264parse config-interval=-1 "
                "! rtph264pay name=pay0 pt=96 config-interval=1 d.audio_0 ! queue ! aacparse "
                "! rtpmp4gpay name=pay1 pt=97 )"
            )
        else:
            factory.set_launch(
                f"( filesrc location={clip} ! qtdemux ! h264parse config-interval=-1 "
                "! rtph264pay name=pay0 pt=96 config-interval=1 )"
            )
        factory.set_shared(False)
        mounts.add_factory(path, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")
    print(f"ready {args.port}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
