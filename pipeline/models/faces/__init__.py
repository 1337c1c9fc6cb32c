"""Faces found in frames: the finders (BlazeFace, MTCNN) and the face box drawn from landmarks."""
