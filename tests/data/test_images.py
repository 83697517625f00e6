"""load_image on every format: 8/16-bit PNG, JPEG, DICOM (MONOCHROME1/2, window, VOI LUT, rescale, signed),
and the failures (missing, corrupt, no pixel data), plus the atomic writer and the resizer."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clinclip.data.images import ImageReadError, load_image, resize_shorter_side, save_image_uint8
from clinclip.errors import ClinclipError
from data_helpers import gradient, write_dicom, write_png


def test_png_8bit_roundtrip(tmp_path):
    pixels = gradient()
    path = write_png(tmp_path / "a.png", pixels)
    image = load_image(path)
    assert image.dtype == np.uint8 and image.shape == (24, 20)
    np.testing.assert_array_equal(image, pixels)


def test_png_16bit_scaled_by_its_own_range(tmp_path):
    # A 12-bit detector exported into a 16-bit PNG: values 0..4095 must fill 0..255, not 0..15.
    pixels = gradient(high=4095, dtype=np.uint16)
    path = tmp_path / "b.png"
    Image.fromarray(pixels).save(path)
    assert Image.open(path).mode.startswith("I")
    image = load_image(path)
    assert image.dtype == np.uint8
    assert image.min() == 0 and image.max() == 255
    np.testing.assert_allclose(image.astype(float), pixels / 4095 * 255, atol=1)


def test_rgb_and_jpeg_become_gray(tmp_path):
    rgb = np.stack([gradient()] * 3, axis=-1)
    png = write_png(tmp_path / "rgb.png", rgb)
    np.testing.assert_array_equal(load_image(png), gradient())
    jpg = tmp_path / "c.jpg"
    Image.fromarray(gradient(64, 64)).save(jpg, quality=95)
    image = load_image(jpg)
    assert image.shape == (64, 64) and image.dtype == np.uint8
    assert np.abs(image.astype(int) - gradient(64, 64)).max() <= 8  # JPEG is lossy


def test_dicom_monochrome2_without_window_uses_full_range(tmp_path):
    pixels = gradient(high=1000, dtype=np.uint16) + 200
    path = write_dicom(tmp_path / "m2.dcm", pixels, bits_stored=12)
    image = load_image(path)
    assert image.min() == 0 and image.max() == 255
    assert (np.diff(image[0].astype(int)) >= 0).all()  # ramp kept left-to-right


def test_dicom_monochrome1_is_inverted(tmp_path):
    pixels = gradient(high=4000, dtype=np.uint16)
    m1 = load_image(write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1", bits_stored=12))
    m2 = load_image(write_dicom(tmp_path / "m2.dcm", pixels, photometric="MONOCHROME2", bits_stored=12))
    np.testing.assert_array_equal(m1, 255 - m2)
    assert m1[0, 0] == 255 and m1[0, -1] == 0


def test_dicom_window_center_width(tmp_path):
    # 12-bit ramp; window 1000..3000: below -> 0, above -> 255, linear inside.
    pixels = np.array([[0, 999, 1500, 2000, 2500, 3001, 4095]], dtype=np.uint16).repeat(3, axis=0)
    path = write_dicom(tmp_path / "w.dcm", pixels, bits_stored=12, window=(2000, 2000))
    image = load_image(path)[0]
    assert image[0] == 0 and image[1] == 0
    assert image[5] == 255 and image[6] == 255
    assert abs(int(image[2]) - 64) <= 1 and abs(int(image[3]) - 128) <= 1 and abs(int(image[4]) - 191) <= 1


def test_dicom_window_after_rescale_slope_intercept(tmp_path):
    # Stored 0..2000 with intercept -1000 -> -1000..1000; window centred at 0, width 1000 -> -500..500.
    pixels = np.array([[0, 500, 1000, 1500, 2000]], dtype=np.uint16)
    path = write_dicom(tmp_path / "r.dcm", pixels, bits_stored=12, rescale=(1.0, -1000.0), window=(0, 1000))
    image = load_image(path)[0]
    assert image[0] == 0 and image[1] == 0
    assert abs(int(image[2]) - 128) <= 1
    assert image[3] == 255 and image[4] == 255


def test_dicom_voi_lut_sequence_applied(tmp_path):
    # A non-linear (squared) VOI LUT over 0..255 with 12-bit output entries; pixels below the first
    # mapped value take the first entry, above the last the last.
    first = 100
    lut = (np.linspace(0, 1, 256) ** 2 * 4095).round().astype(np.uint16)
    pixels = np.array([[0, 100, 228, 355, 1000]], dtype=np.uint16)
    path = write_dicom(tmp_path / "v.dcm", pixels, bits_stored=12, voi_lut=(first, lut),
                       window=(50, 10))  # the LUT wins over a window when both are present
    image = load_image(path)[0]
    expected = np.array([lut[0], lut[0], lut[128], lut[255], lut[255]]) / 4095 * 255
    np.testing.assert_allclose(image, expected.round(), atol=1)


def test_dicom_8bit_signed_and_no_preamble(tmp_path):
    eight = gradient()
    np.testing.assert_array_equal(load_image(write_dicom(tmp_path / "e.dcm", eight)), gradient())
    signed = (gradient(high=2000, dtype=np.int32) - 1000).astype(np.int16)
    image = load_image(write_dicom(tmp_path / "s.dcm", signed, signed=True, bits_stored=16))
    assert image[0, 0] == 0 and image[0, -1] == 255
    raw = write_dicom(tmp_path / "nopreamble", gradient(), preamble=False)  # no suffix, no DICM magic
    np.testing.assert_array_equal(load_image(raw.rename(tmp_path / "nopreamble.dcm")), gradient())


def test_missing_and_corrupt_files_raise_naming_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="missing.png.*file not found"):
        load_image(tmp_path / "missing.png")
    bad_png = tmp_path / "bad.png"
    bad_png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(ImageReadError, match="bad.png"):
        load_image(bad_png)
    truncated = tmp_path / "trunc.png"
    write_png(truncated, gradient(200, 200) ^ np.uint8(0x5A))
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ImageReadError, match="trunc.png"):
        load_image(truncated)
    bad_dcm = tmp_path / "bad.dcm"
    bad_dcm.write_bytes(b"\0" * 128 + b"DICM" + b"\x01" * 50)
    with pytest.raises(ImageReadError, match="bad.dcm"):
        load_image(bad_dcm)
    assert issubclass(ImageReadError, ClinclipError)


def test_dicom_without_pixel_data_and_short_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "np.dcm", gradient())
    import pydicom

    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(ImageReadError, match="np.dcm.*no Pixel Data"):
        load_image(path)
    ds = pydicom.dcmread(write_dicom(tmp_path / "short.dcm", gradient()))
    ds.PixelData = ds.PixelData[:100]
    ds.save_as(tmp_path / "short.dcm")
    with pytest.raises(ImageReadError, match="short.dcm.*could not be decoded"):
        load_image(tmp_path / "short.dcm")


def test_save_image_uint8_atomic_and_validated(tmp_path):
    out = save_image_uint8(gradient(), tmp_path / "sub" / "x.png")
    np.testing.assert_array_equal(load_image(out), gradient())
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.png"]  # no temp file left
    with pytest.raises(ClinclipError, match="uint8"):
        save_image_uint8(gradient().astype(np.float32), tmp_path / "y.png")


def test_resize_shorter_side_keeps_aspect_never_enlarges():
    image = gradient(400, 300)
    small = resize_shorter_side(image, 100)
    assert small.shape == (133, 100) and small.dtype == np.uint8
    assert resize_shorter_side(image, 500) is image


@pytest.mark.parametrize("kwargs", [
    dict(window=(1800, 2500)), dict(rescale=(2.0, -1024.0), window=(0, 3000)), dict(photometric="MONOCHROME1"),
    dict(voi_lut=(500, (np.linspace(0, 1, 3000) ** 0.5 * 4095).astype(np.uint16))), dict(rescale=(0.5, 10.0)),
])
def test_dicom_lookup_table_path_equals_per_pixel_mapping(tmp_path, kwargs):
    # load_image maps each distinct stored value once and indexes; it must equal mapping every pixel.
    import pydicom

    from clinclip.data.images import _map_stored_values

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 4096, size=(40, 30)).astype(np.uint16)
    path = write_dicom(tmp_path / "x.dcm", pixels, bits_stored=12, **kwargs)
    ds = pydicom.dcmread(path)
    direct = _map_stored_values(ds.pixel_array, ds, str(ds.PhotometricInterpretation), None)
    np.testing.assert_array_equal(load_image(path), direct)
    assert direct.min() < 60 and direct.max() > 200  # a real spread, not a constant image


def test_arrays_are_writable(tmp_path):
    # torch.from_numpy warns on read-only arrays; every array we hand out is writable.
    png = write_png(tmp_path / "a.png", gradient(300, 200))
    dcm = write_dicom(tmp_path / "a.dcm", gradient(high=4000, dtype=np.uint16), bits_stored=12)
    for image in (load_image(png), load_image(dcm), resize_shorter_side(load_image(png), 64)):
        assert image.flags.writeable and image.flags.c_contiguous


def test_compressed_dicom_rle_lossless(tmp_path):
    # Compressed transfer syntaxes go through pydicom's decoders (RLE Lossless needs no plugin).
    import pydicom
    from pydicom.uid import RLELossless

    pixels = gradient(high=4000, dtype=np.uint16)
    path = write_dicom(tmp_path / "plain.dcm", pixels, bits_stored=12, window=(2000, 4000))
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless)
    ds.save_as(tmp_path / "rle.dcm")
    assert pydicom.dcmread(tmp_path / "rle.dcm").file_meta.TransferSyntaxUID == RLELossless
    np.testing.assert_array_equal(load_image(tmp_path / "rle.dcm"), load_image(path))


def test_jpeg_baseline_dicom_as_siim_publishes_them(tmp_path):
    # SIIM-ACR's DICOMs carry JPEG Baseline (1.2.840.10008.1.2.4.50) pixel data; pydicom decodes it via Pillow.
    import io

    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    pixels = gradient(64, 64)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    path = write_dicom(tmp_path / "j.dcm", pixels)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "j.dcm")
    image = load_image(tmp_path / "j.dcm")
    assert image.shape == (64, 64) and np.abs(image.astype(int) - pixels).max() <= 8


def test_8bit_dicom_without_voi_is_kept_as_stored(tmp_path):
    pixels = (gradient() // 2 + 40).astype(np.uint8)  # 40..167: stored display values, not to be stretched
    np.testing.assert_array_equal(load_image(write_dicom(tmp_path / "e.dcm", pixels)), pixels)
    inverted = load_image(write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(inverted, 255 - pixels)
