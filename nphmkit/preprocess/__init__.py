"""Preparing photos and videos for the networks: reading, face detection, square face crops (Pixel3DMM's
x1.42 framing) and their cameras."""

from nphmkit.preprocess.crop import ENLARGE, Crop, crop, crop_transform, square_box
from nphmkit.preprocess.detect import DetectorConfig, NoFaceError, detect_faces, face_box, find_face
from nphmkit.preprocess.images import ImageReadError, Photo, collect_inputs, load_photo
from nphmkit.preprocess.video import Frames, read_frames, write_video

__all__ = [
    "ENLARGE", "Crop", "DetectorConfig", "Frames", "ImageReadError", "NoFaceError", "Photo", "collect_inputs", "crop",
    "crop_transform", "detect_faces", "face_box", "find_face", "load_photo", "read_frames", "square_box", "write_video",
]
