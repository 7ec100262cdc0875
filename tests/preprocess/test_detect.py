"""Face detection on scikit-image's sample photos, and the face box the crop starts from."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from nphmkit.preprocess.detect import DetectorConfig, NoFaceError, detect_faces, face_box, find_face

# the astronaut's face measured by hand: cheek to cheek, mid-forehead to chin (pixels)
ASTRONAUT_FACE = (180.0, 80.0, 268.0, 180.0)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_the_astronaut_has_one_face_where_measured_by_hand():
    boxes = detect_faces(data.astronaut())
    assert len(boxes) == 1, boxes  # the 38 px false positive by her shoulder is below the minimum size
    box, source = find_face(data.astronaut(), "astronaut")
    assert source == "detector"
    assert _iou(box, ASTRONAUT_FACE) > 0.65, box
    # float images in [0, 1] give the same answer
    assert detect_faces(data.astronaut() / 255.0) == boxes


def test_without_the_thresholds_the_false_positives_come_back():
    loose = detect_faces(data.astronaut(), DetectorConfig(min_neighbors=1, min_relative_size=0.0))
    assert len(loose) > 1
    cup = detect_faces(data.coffee(), DetectorConfig(min_neighbors=4, min_relative_size=0.0))
    assert cup, "the cup's 49 px 'face' at low thresholds"


def test_a_photo_without_a_face_is_reported_by_name():
    assert detect_faces(data.coffee()) == []
    with pytest.raises(NoFaceError, match=r"coffee\.png: no face found by the lbp detector.*--bbox"):
        find_face(data.coffee(), "coffee.png")
    with pytest.raises(NoFaceError, match="only 1 face"):
        find_face(data.astronaut(), "astronaut.png", face_index=1)


def test_a_large_photo_is_searched_downscaled_and_boxed_in_its_own_pixels():
    big = np.kron(data.astronaut(), np.ones((3, 3, 1), np.uint8))  # 1536 px
    boxes = detect_faces(big)
    assert len(boxes) == 1
    assert _iou(face_box(boxes[0]), [3 * v for v in ASTRONAUT_FACE]) > 0.6


def test_a_box_given_by_hand_is_used_as_is_and_checked():
    img = data.astronaut()
    assert find_face(img, "a", bbox=(10, 20, 110, 140)) == ((10.0, 20.0, 110.0, 140.0), "given")
    with pytest.raises(ValueError, match="bbox: expected x0 < x1"):
        find_face(img, "a", bbox=(10, 20, 5, 140))
    with pytest.raises(ValueError, match="lies outside"):
        find_face(img, "a", bbox=(600, 20, 700, 140))
    with pytest.raises(ValueError, match="image: expected an"):
        detect_faces(np.zeros((10, 10)))
    with pytest.raises(ValueError, match="backend"):
        DetectorConfig(backend="mtcnn")


def test_opencv_backend_needs_its_extra_or_finds_the_face():
    from nphmkit._optional import available

    if not available("cv2"):
        with pytest.raises(ImportError, match="nphmkit\\[opencv\\]"):
            detect_faces(data.astronaut(), DetectorConfig(backend="opencv"))
    else:
        boxes = detect_faces(data.astronaut(), DetectorConfig(backend="opencv", min_neighbors=5))
        assert boxes and _iou(face_box(boxes[0]), ASTRONAUT_FACE) > 0.4
