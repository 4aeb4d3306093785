"""The 16 MMD-Bench degradations (App. B, Table 7): contract, sizes, seeds, severity order, reference facts, I/O."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from clear_plugins import degradations, hookimpl
from clear_plugins.degradations import capture, environmental, post_processing, transmission
from clear_plugins.errors import ClearConfigError, ImageInputError, PluginError, UnknownNameError
from clear_plugins.plugins import load_plugins

NAMES = degradations.names()
LEVEL_NAMES = ("low", "mid", "hard")
RANDOM_AT_HARD = {
    "lens_flare",
    "motion_blur",
    "dirty_lens",
    "block_exchange",
    "gaussian_noise",
    "graffiti",
    "watermark_damage",
}
"""Types that draw from the generator at Hard; the rest are deterministic there (color_diffusion only draws
strictly above 0.9, as in the reference)."""


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10.0 * np.log10(255.0**2 / max(mse, 1e-12))


def resized(image: np.ndarray, side: int) -> np.ndarray:
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photo (scikit-image's astronaut, shipped offline) at 128x128."""
    return resized(data.astronaut(), 128)


def grey(h: int, w: int, value: int) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


# --- the public API and the registry ---------------------------------------------------------------------------


def test_names_categories_and_levels():
    assert NAMES == (
        "lens_blur",
        "lens_flare",
        "motion_blur",
        "dirty_lens",
        "hsv_saturation",
        "jpeg_compression",
        "block_exchange",
        "mean_shift",
        "scan_lines",
        "dark_illumination",
        "atmospheric_turbulence",
        "gaussian_noise",
        "color_diffusion",
        "sharpness_change",
        "graffiti",
        "watermark_damage",
    )
    cats = degradations.categories()
    assert list(cats) == ["capture", "transmission", "environmental", "post_processing"]
    assert [len(group) for group in cats.values()] == [5, 4, 4, 3]
    assert tuple(name for group in cats.values() for name in group) == NAMES
    assert dict(degradations.LEVELS) == {"low": 0.23, "mid": 0.45, "hard": 0.9}
    assert degradations.category_of("graffiti") == "post_processing"
    cats["capture"].append("mutated")
    assert "mutated" not in degradations.categories()["capture"]


def test_plugin_registers_the_same_16_with_their_category():
    registered = load_plugins(env={"CLEAR_PLUGINS": ""}).degradations
    builtin = {name: spec for name, spec in registered.items() if name in NAMES}
    assert set(builtin) == set(NAMES)
    for name, spec in builtin.items():
        assert spec.category == degradations.category_of(name)
        assert spec.fn is degradations.builtin(name)


def test_importing_the_package_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, clear_plugins.degradations as d; d.names(); "
        "print(any(m in sys.modules for m in ('torch', 'transformers', 'pluggy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- every type, every level, every size -----------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_level_on_a_photo_changes_it_and_keeps_the_input(name, photo):
    before = photo.copy()
    for level in LEVEL_NAMES:
        out = degradations.apply(photo, name, level, seed=0)
        assert out.shape == photo.shape and out.dtype == np.uint8
        assert not np.array_equal(out, photo), f"{name} at {level} left the photo unchanged"
    assert np.array_equal(photo, before)


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (64, 64), (1, 8192), (8192, 1)])
def test_tiny_images_and_long_strips(shape):
    image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    before = image.copy()
    for name in NAMES:
        for level in (*LEVEL_NAMES, 0.0, 1.0, 0.61):
            out = degradations.apply(image, name, level, seed=3)
            assert out.shape == image.shape and out.dtype == np.uint8, (name, level)
    assert np.array_equal(image, before)


def test_continuous_intensities_are_accepted(photo):
    for name in NAMES:
        out = degradations.apply(photo, name, np.float32(0.3141), seed=0)
        assert out.shape == photo.shape


# --- seeds -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_bytes_and_seeds_matter_only_for_random_types(name, photo):
    first = degradations.apply(photo, name, "hard", seed=7)
    again = degradations.apply(photo, name, "hard", seed=7)
    other = degradations.apply(photo, name, "hard", seed=8)
    assert first.tobytes() == again.tobytes()
    assert (first.tobytes() != other.tobytes()) == (name in RANDOM_AT_HARD)


def test_seed_forms():
    image = grey(32, 32, 128)
    by_int = degradations.apply(image, "gaussian_noise", "mid", seed=5)
    by_generator = degradations.apply(image, "gaussian_noise", "mid", seed=np.random.default_rng(5))
    assert np.array_equal(by_int, by_generator)
    by_sequence = degradations.apply(image, "gaussian_noise", "mid", seed=[5, 1])
    assert np.array_equal(by_sequence, degradations.apply(image, "gaussian_noise", "mid", seed=(5, 1)))
    unseeded = [degradations.apply(image, "gaussian_noise", "mid").tobytes() for _ in range(2)]
    assert unseeded[0] != unseeded[1]


def test_color_diffusion_draws_discs_only_above_hard(photo):
    outs = [degradations.apply(photo, "color_diffusion", 0.95, seed=s) for s in (0, 1)]
    assert not np.array_equal(*outs)


# --- severity order --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_each_level_is_stronger_than_the_one_below(name, photo):
    """PSNR to the clean photo, averaged over 3 seeds, falls Low > Mid > Hard for all 16 types.

    PSNR is a sound measure for every type on this photo: geometric warps (atmospheric_turbulence,
    block_exchange) move more pixels further, overlays cover more area, and intensity changes grow. The
    parameter checks below pin what each level does beyond this ordering.
    """
    scores = [
        np.mean([psnr(degradations.apply(photo, name, level, seed=s), photo) for s in range(3)])
        for level in LEVEL_NAMES
    ]
    assert scores[0] > scores[1] + 0.1 > scores[2] + 0.2, scores


# --- parameter checks against the reference's facts ------------------------------------------------------------


def test_dark_illumination_keeps_19_percent_at_hard(photo):
    out = degradations.apply(photo, "dark_illumination", "hard")
    assert np.array_equal(out, np.floor(photo * (1 - 0.9**2)).astype(np.uint8))
    assert out.mean() / photo.mean() == pytest.approx(0.19, abs=0.005)


def test_gaussian_noise_std_on_mid_grey():
    image = grey(256, 256, 128)
    hard = degradations.apply(image, "gaussian_noise", "hard", seed=0).astype(np.float64)
    low = degradations.apply(image, "gaussian_noise", "low", seed=0).astype(np.float64)
    assert hard.std() == pytest.approx(64.0, abs=1.5)  # sigma 67.5 before clipping to [0, 255]
    assert low.std() == pytest.approx(75 * 0.23, rel=0.03)  # no clipping at Low
    assert low.mean() == pytest.approx(127.5, abs=0.3)  # truncation lowers the mean by half a level


def test_jpeg_quality_and_colour_order(photo):
    assert [transmission.jpeg_quality(degradations.LEVELS[lv]) for lv in LEVEL_NAMES] == [78, 57, 14]
    assert transmission.jpeg_quality(1.0) == 5
    bgr = np.ascontiguousarray(photo[..., ::-1])
    _, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 14])
    expected = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]
    assert np.array_equal(degradations.apply(photo, "jpeg_compression", "hard"), expected)
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 220
    out = degradations.apply(red, "jpeg_compression", "hard")
    assert out[..., 0].mean() > 180 and out[..., 2].mean() < 40


def test_hsv_saturation_scales_saturation(photo):
    hsv = cv2.cvtColor(photo, cv2.COLOR_RGB2HSV)
    reddish = np.full((4, 4, 3), (200, 50, 50), np.uint8)  # saturation 191 of 255
    for level in LEVEL_NAMES:
        i = degradations.LEVELS[level]
        scaled = hsv.copy()
        scaled[..., 1] = np.floor(hsv[..., 1] * np.float32(1 - i))
        expected = cv2.cvtColor(scaled, cv2.COLOR_HSV2RGB)
        assert np.array_equal(degradations.apply(photo, "hsv_saturation", level), expected)
        out = cv2.cvtColor(degradations.apply(reddish, "hsv_saturation", level), cv2.COLOR_RGB2HSV)
        assert out[0, 0, 1] == pytest.approx(191 * (1 - i), abs=1.5)
        assert out[0, 0, 0] == 0 and out[0, 0, 2] == 200  # hue and value kept


def test_graffiti_stamp_is_red_and_only_above_055():
    image = grey(256, 256, 128)

    def pure_red(out: np.ndarray) -> int:
        return int(np.all(out == (255, 0, 0), axis=-1).sum())

    for seed in range(4):
        assert pure_red(degradations.apply(image, "graffiti", "hard", seed=seed)) > 200
        assert pure_red(degradations.apply(image, "graffiti", "mid", seed=seed)) == 0
        assert pure_red(degradations.apply(image, "graffiti", "low", seed=seed)) == 0


def test_scan_lines_period_and_height():
    image = grey(400, 16, 255)
    for level, period, height in (("low", 60, 5), ("mid", 36, 5), ("hard", 20, 6)):
        i = degradations.LEVELS[level]
        assert (transmission.scan_period(i), transmission.scan_height(i)) == (period, height)
        out = degradations.apply(image, "scan_lines", level)
        dark_rows = np.flatnonzero(out[:, 0, 0] == 2)  # 255 * 0.01, truncated
        expected = np.flatnonzero(np.arange(400) % period < height)
        assert np.array_equal(dark_rows, expected)
        assert (out[np.arange(400) % period >= height] == 255).all()


def test_block_exchange_moves_whole_blocks_and_handles_tiny_images(photo):
    out = degradations.apply(photo, "block_exchange", "hard", seed=0)
    assert transmission.block_side(0.9) == 32

    def tiles(image: np.ndarray, h: int, w: int) -> list[bytes]:
        rows, cols = image.shape[0] // h, image.shape[1] // w
        return sorted(
            image[r * h : (r + 1) * h, c * w : (c + 1) * w].tobytes()
            for r in range(rows)
            for c in range(cols)
        )

    assert not np.array_equal(out, photo) and tiles(out, 32, 32) == tiles(photo, 32, 32)
    one = np.full((1, 1, 3), 9, np.uint8)
    assert np.array_equal(degradations.apply(one, "block_exchange", "hard", seed=0), one)
    small = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    moved_small = degradations.apply(small, "block_exchange", "hard", seed=0)  # blocks shrink to 3x2
    assert not np.array_equal(moved_small, small)
    assert tiles(moved_small[:6, :4], 3, 2) == tiles(small[:6, :4], 3, 2)
    assert np.array_equal(moved_small[6:], small[6:]) and np.array_equal(moved_small[:, 4:], small[:, 4:])
    strip = np.random.default_rng(0).integers(0, 256, (1, 8192, 3), dtype=np.uint8)
    moved = degradations.apply(strip, "block_exchange", "hard", seed=0)
    assert not np.array_equal(moved, strip) and tiles(moved, 1, 32) == tiles(strip, 1, 32)


def test_mean_shift_exact_is_the_reference_and_fast_is_close():
    image = resized(data.astronaut(), 256)
    exact = degradations.apply(image, "mean_shift", "hard", exact=True)
    assert np.array_equal(exact, cv2.pyrMeanShiftFiltering(image, 36, 36))
    fast = degradations.apply(image, "mean_shift", "hard")
    assert not np.array_equal(fast, exact)
    assert psnr(fast, exact) >= 30.0


def test_lens_blur_matches_the_reference_formula(photo):
    kernel = cv2.getGaussianKernel(101, 18.0)  # min(101, 3 + 300 * 0.9) made odd; sigma 20 * 0.9
    blurred = cv2.filter2D(photo.astype(np.float32), -1, kernel @ kernel.T).astype(np.uint8)
    expected = cv2.addWeighted(photo, 1 - 0.63, blurred, 0.81, 0)
    out = degradations.apply(photo, "lens_blur", "hard")
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_color_diffusion_and_sharpness_on_flat_grey():
    image = grey(32, 32, 100)
    # blur of a flat image is the image; scaled by 0.81, truncated; blended 0.19 / 0.81
    diffused = degradations.apply(image, "color_diffusion", "hard")
    assert set(np.unique(diffused)) <= {84, 85}
    # Laplacian sharpening of a flat image saturates to 255; blended 0.7 / 0.3 -> 146.5
    sharpened = degradations.apply(image, "sharpness_change", "hard")
    assert set(np.unique(sharpened)) <= {146, 147}


def test_atmospheric_turbulence_amplitude():
    for level in LEVEL_NAMES:
        i = degradations.LEVELS[level]
        map_x, map_y = environmental.turbulence_maps(400, 400, i)
        shift = map_x[:, 200] - 200
        assert np.abs(shift).max() == pytest.approx(40 * i, rel=0.01)
        interior = slice(60, 340)  # away from the rows where the vertical sampling position is clamped
        assert np.allclose((map_y[:, 0] - np.arange(400))[interior], 0.7 * shift[interior], atol=1e-3)


def test_motion_kernel_is_a_normalised_line():
    for length in (5, 13, 27):
        kernel = capture.motion_kernel(length, 33.0)
        assert kernel.shape == (length, length)
        assert kernel.sum() == pytest.approx(1.0, abs=1e-5)
        assert (kernel > 0).sum() < 3 * length  # a line, not a blob


def test_lens_flare_is_cool_white_and_brightens():
    out = degradations.apply(grey(128, 128, 0), "lens_flare", "hard", seed=0).astype(int)
    core = out[..., 1] == out[..., 1].max()
    assert out[..., 1].max() == pytest.approx(255 * 0.81, abs=2)
    assert (out[core][:, 2] >= out[core][:, 0]).all() and (out[core][:, 1] > out[core][:, 0]).all()


def test_watermark_damage_only_touches_its_rectangles(photo):
    image = resized(data.astronaut(), 256)
    for level, seed in (("low", 0), ("hard", 1)):
        i = degradations.LEVELS[level]
        mask = post_processing.watermark_mask(256, 256, i, np.random.default_rng(seed))
        out = degradations.apply(image, "watermark_damage", level, seed=seed)
        changed = np.any(out != image, axis=-1)
        near_mask = cv2.dilate(mask, np.ones((3, 3), np.uint8)) > 0
        assert changed.any() and not (changed & ~near_mask).any()
    exact = degradations.apply(image, "watermark_damage", "hard", seed=1, exact=True)
    approx = degradations.apply(image, "watermark_damage", "hard", seed=1)
    assert psnr(approx, exact) > 28.0


def test_dirty_lens_darkens_more_at_each_level():
    image = grey(96, 96, 255)
    means = [degradations.apply(image, "dirty_lens", level, seed=0).mean() for level in LEVEL_NAMES]
    assert means[0] > means[1] > means[2]
    assert means[2] < 255 * (1 - 0.7 * 0.9) + 0.8 * 0.9 * 120  # below image weight plus brightest dirt


# --- input and output types ------------------------------------------------------------------------------------


def test_pil_in_pil_out_same_mode_and_size(photo):
    rgb = Image.fromarray(photo)
    for mode in ("RGB", "RGBA", "L", "LA", "1", "P", "CMYK", "YCbCr"):
        image = rgb.convert(mode)
        out = degradations.apply(image, "gaussian_noise", "mid", seed=0)
        assert isinstance(out, Image.Image)
        assert (out.mode, out.size) == (mode, image.size)


def test_grayscale_is_replicated_and_returned_as_grayscale():
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    out = degradations.apply(gray, "dark_illumination", "hard")
    assert out.shape == (8, 8) and np.array_equal(out, np.floor(gray * (1 - 0.9**2)).astype(np.uint8))
    out1 = degradations.apply(gray[..., None], "dark_illumination", "hard")
    assert out1.shape == (8, 8, 1) and np.array_equal(out1[..., 0], out)
    pil = degradations.apply(Image.fromarray(gray), "dark_illumination", "hard")
    assert pil.mode == "L" and np.array_equal(np.asarray(pil), out)


def test_rgba_is_composited_over_white_and_keeps_its_alpha():
    rgba = np.zeros((4, 4, 4), np.uint8)  # black colour
    rgba[:2, ..., 3] = 0  # fully transparent rows -> white
    rgba[2:, ..., 3] = 255  # opaque rows -> black
    out = degradations.apply(rgba, "dark_illumination", "hard")
    assert out.shape == (4, 4, 4) and np.array_equal(out[..., 3], rgba[..., 3])
    assert (out[:2, ..., :3] == int(255 * 0.19)).all() and (out[2:, ..., :3] == 0).all()
    pil = degradations.apply(Image.fromarray(rgba), "dark_illumination", "hard")
    assert pil.mode == "RGBA" and np.array_equal(np.asarray(pil), out)


def test_input_array_is_never_modified(photo):
    image = photo.copy()
    view = image[::1]
    for name in NAMES:
        degradations.apply(view, name, "hard", seed=0)
    assert np.array_equal(image, photo)


# --- bad inputs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((8, 8, 3), np.float32), "dtype float32.*uint8"),
        (np.zeros((8, 8, 3), bool), "dtype bool"),
        (np.zeros((8,), np.uint8), r"shape \(8,\)"),
        (np.zeros((2, 8, 8, 3), np.uint8), "shape"),
        (np.zeros((8, 8, 2), np.uint8), "shape"),
        (np.zeros((0, 8, 3), np.uint8), "empty"),
        ([[0, 1], [2, 3]], "type list.*numpy uint8 array"),
        (Image.new("F", (4, 4)), "mode 'F'.*convert"),
        (Image.new("RGB", (0, 0)), "empty"),
    ],
)
def test_bad_images_name_the_problem_and_the_fix(bad, match):
    with pytest.raises(ImageInputError, match=match):
        degradations.apply(bad, "lens_blur", "low")


@pytest.mark.parametrize(
    ("level", "match"),
    [
        (float("nan"), "outside"),
        (-0.1, "outside"),
        (1.5, "outside"),
        ("extreme", "unknown level 'extreme'.*low, mid, hard"),
        (True, "not a number"),
        (None, "not a number"),
    ],
)
def test_bad_levels(level, match):
    with pytest.raises(ClearConfigError, match=match):
        degradations.apply(grey(4, 4, 0), "lens_blur", level)


def test_level_names_ignore_case():
    assert degradations.resolve_intensity("Hard") == 0.9


@pytest.mark.parametrize("seed", [-1, True, "abc", 1.5])
def test_bad_seeds(seed):
    with pytest.raises(ClearConfigError, match="seed"):
        degradations.apply(grey(4, 4, 0), "gaussian_noise", "low", seed=seed)


def test_unknown_name_lists_the_registered_ones():
    with pytest.raises(UnknownNameError, match=r"lens_blurr.*lens_blur"):
        degradations.apply(grey(4, 4, 0), "lens_blurr", "low")
    with pytest.raises(ClearConfigError, match="not a string"):
        degradations.apply(grey(4, 4, 0), 3, "low")


def test_direct_calls_check_their_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ImageInputError, match=r"\(H, W, 3\)"):
        capture.lens_blur(np.zeros((4, 4), np.uint8), 0.5, rng)
    with pytest.raises(ClearConfigError, match="outside"):
        capture.lens_blur(grey(4, 4, 0), 2.0, rng)
    with pytest.raises(ClearConfigError, match="radius_divisor"):
        transmission.MeanShiftApprox(radius_divisor=0.5)


# --- third-party degradations ----------------------------------------------------------------------------------


class Plugin:
    @hookimpl
    def clear_register_degradations(self, register):
        register("invert", lambda image, intensity, rng: 255 - image, category="custom")
        register("broken", lambda image, intensity, rng: image[:1], category="custom")
        register("in_place", self.in_place, category="custom")

    @staticmethod
    def in_place(image, intensity, rng):
        image[...] = 0
        return image


def test_third_party_degradations_go_through_apply():
    plugins = load_plugins(extra=[Plugin()], env={"CLEAR_PLUGINS": ""})
    image = grey(4, 4, 10)
    assert (degradations.apply(image, "invert", "low", plugins=plugins) == 245).all()
    through_plugins = degradations.apply(image, "graffiti", "low", seed=0, plugins=plugins)
    assert np.array_equal(through_plugins, degradations.apply(image, "graffiti", "low", seed=0))
    with pytest.raises(PluginError, match="'broken' returned uint8 \\(1, 4, 3\\)"):
        degradations.apply(image, "broken", "low", plugins=plugins)
    with pytest.raises(ValueError, match="read-only"):
        degradations.apply(image, "in_place", "low", plugins=plugins)
    assert (image == 10).all()
