"""A window that plays a video, as a call's window shows the far side: ``python -m tests.face_window
CLIP X Y TITLE`` on $DISPLAY, the clip's frames looped at its frame rate in a Tk window placed at
(X, Y); its X11 window id printed on the first line of stdout. The screen:// tests grab it."""

from __future__ import annotations

import sys
import tkinter

import av


def frames_of(clip: str) -> tuple[list[bytes], int, int, float]:
    """The clip as PPM images (what Tk's PhotoImage reads without Pillow), its size and frame rate."""
    images = []
    with av.open(clip) as source:
        stream = source.streams.video[0]
        fps = float(stream.average_rate or 25)
        for frame in source.decode(stream):
            rgb = frame.to_ndarray(format="rgb24")
            height, width = rgb.shape[:2]
            images.append(b"P6 %d %d 255\n" % (width, height) + rgb.tobytes())
    return images, width, height, fps


def main(clip: str, x: int, y: int, title: str) -> None:
    images, width, height, fps = frames_of(clip)
    root = tkinter.Tk()
    root.title(title)
    root.geometry(f"{width}x{height}+{x}+{y}")
    root.overrideredirect(True)  # no window manager under Xvfb: place it exactly, undecorated
    label = tkinter.Label(root, borderwidth=0, highlightthickness=0)
    label.pack()
    photos = [tkinter.PhotoImage(data=image, format="PPM") for image in images]

    def show(i: int) -> None:
        label.configure(image=photos[i % len(photos)])
        root.after(int(1000 / fps), show, i + 1)

    show(0)
    root.update()
    print(root.wm_frame(), flush=True)  # the X11 window id (hex), as xdotool search --name would find it
    root.mainloop()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
