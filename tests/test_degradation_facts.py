"""Each MMD-Bench degradation's parameters against the reference implementation's facts (issue 3, App. B).

Where a parameter is a count (discs, lines, rectangles, swaps) or a radius passed to OpenCV, the test records the
OpenCV calls the module makes; where it shapes the output (kernels, gains, blends), the test computes the
expected output independently, with the full 2-D kernel built from the documented numbers.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from degradation_helpers import LEVEL_NAMES, astronaut_128, grey, psnr, resized
from skimage import data

from clear_plugins import degradations
from clear_plugins.degradations import capture, environmental, post_processing, transmission


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photo (scikit-image's astronaut, shipped offline) at 128x128."""
    return astronaut_128()


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
    between = np.random.default_rng(0).integers(
        0, 256, (40, 40, 3), dtype=np.uint8
    )  # 1-2 blocks of 32 a side
    moved_between = degradations.apply(between, "block_exchange", "hard", seed=0)  # blocks shrink to 20x20
    assert not np.array_equal(moved_between, between)
    assert tiles(moved_between, 20, 20) == tiles(between, 20, 20)
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


def structured_image() -> np.ndarray:
    """64 x 64 with one structure per channel: a vertical step (R), a bright 9 x 9 square (G), 8-row stripes (B)."""
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, 32:, 0] = 255
    image[..., 1] = 30
    image[28:37, 28:37, 1] = 255
    image[(np.arange(64) // 8) % 2 == 1, :, 2] = 200
    return image


@pytest.mark.parametrize("level", [*LEVEL_NAMES, 0.6])
def test_color_diffusion_matches_the_reference_formula(level):
    """A Gaussian blur of side 3 + 2 floor(20 i) and sigma 50 i, scaled by i^2 and truncated, blended
    image * max(0.1, 1 - 0.9 i) + diffused * min(0.9, 0.9 i); computed here with the full 2-D kernel (ours
    filters separably, so a few values differ by one)."""
    image = structured_image()
    i = degradations.resolve_intensity(level)
    column = cv2.getGaussianKernel(3 + 2 * int(20 * i), 50 * i)
    diffused = cv2.filter2D(image.astype(np.float32), -1, column @ column.T * i**2).astype(np.uint8)
    expected = cv2.addWeighted(image, max(0.1, 1 - 0.9 * i), diffused, min(0.9, 0.9 * i), 0)
    out = degradations.apply(image, "color_diffusion", level)
    assert np.abs(out.astype(int) - expected).max() <= 1
    # float rounding flips a few truncations; a sigma of 40 i instead of 50 i would flip 1.6-13% of the values
    assert np.mean(out != expected) < 0.005


@pytest.mark.parametrize("level", [0.0, 0.05, *LEVEL_NAMES])
def test_sharpness_change_matches_the_reference_formula(level):
    """The Laplacian kernel [[0,-1,0],[-1,5,-1],[0,-1,0]] times 80 i, saturated to [0, 255], blended 0.7 / 0.3
    (at i = 0 a 3x3 Gaussian blur instead). Values 0-3 keep many sharpened values unsaturated (multiples of 80 i
    below 255), so a wrong gain or blend shows."""
    image = np.random.default_rng(0).integers(0, 4, (48, 48, 3), dtype=np.uint8)
    i = degradations.resolve_intensity(level)
    if i > 0:
        kernel = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], np.float64) * (80 * i)
        layer = np.clip(np.rint(cv2.filter2D(image.astype(np.float64), -1, kernel)), 0, 255)
        assert ((layer > 0) & (layer < 255)).mean() > 0.1
    else:
        layer = cv2.GaussianBlur(image, (3, 3), 0).astype(np.float64)
    expected = np.clip(np.rint(0.7 * image + 0.3 * layer), 0, 255)
    out = degradations.apply(image, "sharpness_change", level)
    assert np.abs(out - expected).max() <= 1


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


def spy(monkeypatch: pytest.MonkeyPatch, module, function: str) -> list[tuple[tuple, dict]]:
    """Record every call of ``module.cv2.<function>`` (still calling it) for the rest of the test."""
    calls: list[tuple[tuple, dict]] = []
    original = getattr(module.cv2, function)

    def record(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(module.cv2, function, record)
    return calls


@pytest.mark.parametrize(("level", "length"), [(0.1, 5), ("low", 6), ("mid", 13), ("hard", 27), (1.0, 30)])
def test_motion_blur_streak_is_max_5_30i_long(level, length):
    """An impulse blurred by motion_blur is the kernel: a line through the centre of a length x length square,
    so it spans length pixels along one axis (the faint end pixel may round to 0) and no more along either."""
    image = grey(81, 81, 0)
    image[40, 40] = 255
    extents = []
    for seed in range(6):
        rows, cols = np.nonzero(degradations.apply(image, "motion_blur", level, seed=seed)[..., 0])
        extents.append(max(np.ptp(rows), np.ptp(cols)) + 1)
    assert all(length - 1 <= extent <= length for extent in extents), extents
    assert max(extents) == length


@pytest.mark.parametrize(("level", "swaps"), [("low", 8), ("mid", 15), ("hard", 31)])
def test_block_exchange_makes_int_35i_swaps(level, swaps):
    """On a 64 x 64 grid of uniquely coloured blocks, k swaps displace at most 2k blocks, exactly 2k when the
    2k chosen cells are distinct (most seeds on 4096 cells): int(35 i), not round (16 at Mid, 32 at Hard)."""
    side = transmission.block_side(degradations.LEVELS[level])
    labels = np.arange(64 * 64).reshape(64, 64)
    cells = np.stack([labels % 256, labels // 256, np.zeros_like(labels)], axis=-1).astype(np.uint8)
    image = np.repeat(np.repeat(cells, side, axis=0), side, axis=1)
    displaced = [
        int(np.any(out[::side, ::side] != cells, axis=-1).sum())
        for out in (degradations.apply(image, "block_exchange", level, seed=seed) for seed in range(8))
    ]
    assert max(displaced) == 2 * swaps and min(displaced) > 0, displaced


@pytest.mark.parametrize(("level", "discs"), [("low", 9), ("mid", 16), ("hard", 30)])
def test_lens_flare_draws_3_plus_30i_discs_with_streaks(monkeypatch, level, discs):
    circles = spy(monkeypatch, capture, "circle")
    lines = spy(monkeypatch, capture, "line")
    degradations.apply(grey(64, 64, 0), "lens_flare", level, seed=0)
    assert len(circles) == len(lines) == discs
    assert all(10 <= args[2] <= 50 and args[4] == -1 for args, _ in circles)  # radius 10-50, filled
    assert all(args[4] == 2 for args, _ in lines)  # 2-px streaks


@pytest.mark.parametrize(("level", "count", "stamps"), [("low", 2, 0), ("mid", 4, 0), ("hard", 9, 1)])
def test_graffiti_draws_int_10i_lines(monkeypatch, level, count, stamps):
    lines = spy(monkeypatch, post_processing, "line")
    words = spy(monkeypatch, post_processing, "putText")
    degradations.apply(grey(256, 256, 128), "graffiti", level, seed=0)
    assert (len(lines), len(words)) == (count, stamps)
    i = degradations.LEVELS[level]
    assert all(1 <= args[4] <= max(1, int(5 * i)) for args, _ in lines)  # thickness 1 to max(1, 5 i)


@pytest.mark.parametrize(("level", "count"), [("low", 4), ("mid", 7), ("hard", 14)])
def test_watermark_damage_draws_int_1_plus_15i_rectangles(monkeypatch, level, count):
    rectangles = spy(monkeypatch, post_processing, "rectangle")
    degradations.apply(grey(256, 256, 128), "watermark_damage", level, seed=0)
    assert len(rectangles) == count
    for (_, top_left, bottom_right, *_), _ in rectangles:
        width, height = bottom_right[0] - top_left[0], bottom_right[1] - top_left[1]
        assert 50 <= width <= 200 and 20 <= height <= 80  # 50-200 x 20-80 px on images of side >= 100


@pytest.mark.parametrize(("level", "radius"), [("low", 9), ("mid", 18), ("hard", 36)])
def test_mean_shift_radius_is_int_40i_at_every_level(monkeypatch, level, radius):
    """exact: the reference's call (spatial = colour = int(40 i), one pyramid level); fast: spatial radius
    halved, colour radius kept, one more pyramid level (:class:`transmission.MeanShiftApprox`)."""
    calls = spy(monkeypatch, transmission, "pyrMeanShiftFiltering")
    image = resized(data.astronaut(), 32)
    degradations.apply(image, "mean_shift", level, exact=True)
    degradations.apply(image, "mean_shift", level)
    (exact_args, exact_kwargs), (fast_args, fast_kwargs) = calls
    assert (exact_args[1:], exact_kwargs["maxLevel"]) == ((radius, radius), 1)
    assert (fast_args[1:], fast_kwargs["maxLevel"]) == ((radius // 2, radius), 2)


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
