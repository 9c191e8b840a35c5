import io

import pytest
from PIL import Image

from omni.video.media import MediaError, check_image, check_video, sniff_file, sniff_type


def test_sniffing_uses_bytes_not_extensions(tmp_path, media):
    assert sniff_file(media / "test.jpg") == "jpeg"
    assert sniff_file(media / "test.mp4") == "mp4"
    assert sniff_file(media / "test.avi") == "avi"
    fake = tmp_path / "photo.jpg"
    fake.write_bytes(b"<!DOCTYPE html><html><body>404</body></html>")
    assert sniff_file(fake) == "html"
    assert sniff_type(b"") == "empty"
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    assert sniff_type(buf.getvalue()) == "png"


def test_images_decode_and_bombs_are_refused(tmp_path, media):
    info, rgb = check_image(media / "test.jpg", "jpeg", 10**7)
    assert info.width == 320 and rgb.size == (320, 240) and rgb.mode == "RGB"
    info, small = check_image(media / "test.jpg", "jpeg", 10**7, decode_short_side=60)
    assert info.width == 320 and 60 <= small.height < 240  # DCT-scaled decode, size still reported
    with pytest.raises(MediaError, match="too many pixels"):
        check_image(media / "test.jpg", "jpeg", 1000)
    with pytest.raises(MediaError, match="not an image: html"):
        check_image(media / "test.jpg", "html", 10**7)
    broken = tmp_path / "b.jpg"
    broken.write_bytes((media / "test.jpg").read_bytes()[:2000])
    with pytest.raises(MediaError, match="corrupt image"):
        check_image(broken, "jpeg", 10**7)
    with pytest.raises(MediaError, match="corrupt image"):  # also when decoding at reduced scale
        check_image(broken, "jpeg", 10**7, decode_short_side=30)


@pytest.mark.parametrize("name,duration", [("test.mp4", 10.0), ("test.avi", 6.56), ("demo_skeleton.mp4", 2.57),
                                           ("ntu_sample.avi", 2.4), ("demo_spatiotemporal_det.mp4", 9.5),
                                           ("test_video_structuralize.mp4", 10.01)])
def test_real_videos_probe(realdata, name, duration):
    info = check_video(realdata / name, sniff_file(realdata / name))
    assert info.duration_s == pytest.approx(duration, abs=0.05)
    assert info.width > 0 and info.fps > 0


def test_truncated_videos_are_named_as_such(tmp_path, media):
    data = (media / "test.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="truncated video"):
        check_video(cut, "mp4")
    avi = (media / "test.avi").read_bytes()
    cut_avi = tmp_path / "cut.avi"
    cut_avi.write_bytes(avi[: len(avi) // 3])
    with pytest.raises(MediaError, match="truncated video"):
        check_video(cut_avi, "avi")
    with pytest.raises(MediaError, match="not a video: jpeg"):
        check_video(media / "test.jpg", "jpeg")
