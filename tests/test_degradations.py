"""The 16 MMD-Bench degradations (App. B, Table 7): contract, sizes, seeds, severity order, I/O, plugins.

The checks of each type's parameters against the reference's facts are in ``test_degradation_facts.py``.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from degradation_helpers import LEVEL_NAMES, astronaut_128, grey, psnr
from PIL import Image
from skimage import data

from clear_plugins import degradations, hookimpl
from clear_plugins.degradations import capture, transmission
from clear_plugins.errors import ClearConfigError, ImageInputError, PluginError, UnknownNameError
from clear_plugins.plugins import load_plugins

NAMES = degradations.names()
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


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photo (scikit-image's astronaut, shipped offline) at 128x128."""
    return astronaut_128()


PHOTOS = ("astronaut", "chelsea", "coffee")
"""The real photos scikit-image ships offline."""
PHOTO_LONG_SIDE = 96


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    """astronaut (96x96), chelsea and coffee (64x96): each shrunk to a 96-pixel long side, aspect kept."""
    shrunk = {}
    for name in PHOTOS:
        image = getattr(data, name)()
        scale = PHOTO_LONG_SIDE / max(image.shape[:2])
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        shrunk[name] = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return shrunk


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


@pytest.mark.parametrize("photo_name", PHOTOS)
@pytest.mark.parametrize("name", NAMES)
def test_every_level_on_a_photo_changes_it_and_keeps_the_input(name, photo_name, photos):
    image = photos[photo_name]
    before = image.copy()
    for level in LEVEL_NAMES:
        out = degradations.apply(image, name, level, seed=0)
        assert out.shape == image.shape and out.dtype == np.uint8
        assert not np.array_equal(out, image), f"{name} at {level} left {photo_name} unchanged"
    assert np.array_equal(image, before)


STRIPS = ((1, 8192), (8192, 1))
MUST_CHANGE_STRIPS = ("gaussian_noise", "dark_illumination", "hsv_saturation", "scan_lines")
"""Types that must change a random colour strip at every intensity > 0, whatever the seed:

- gaussian_noise: a value stays only if its noise (std >= 17 at 0.23) lands in [0, 1), about 2% of values
  (or is clipped away, at 0 and 255); all 24576 staying is impossible in practice (and the seed is fixed).
- dark_illumination: every value v >= 1 becomes floor(v (1 - i^2)) < v.
- hsv_saturation: the strip holds pixels with saturation and value >= 128 (asserted); scaling their
  saturation by 1 - i <= 0.77 raises their smallest channel by >= 0.23 * 128 * 128 / 255 > 14 levels.
- scan_lines: row 0 always starts a band, so every value v >= 1 in it drops to floor(v / 100) < v (the 1 x 8192
  strip is all row 0; the 8192 x 1 column has a band every <= 60 rows).
"""


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (64, 64), *STRIPS])
def test_tiny_images_and_long_strips(shape):
    image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    before = image.copy()
    if shape in STRIPS:
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        assert ((hsv[..., 1] >= 128) & (hsv[..., 2] >= 128)).any()
    for name in NAMES:
        for level in (*LEVEL_NAMES, 0.0, 1.0, 0.61):
            out = degradations.apply(image, name, level, seed=3)
            assert out.shape == image.shape and out.dtype == np.uint8, (name, level)
            if shape in STRIPS and name in MUST_CHANGE_STRIPS and level != 0.0:
                assert not np.array_equal(out, image), (name, level, shape)
    assert np.array_equal(image, before)


def test_continuous_intensities_are_accepted_and_fall_between_the_levels(photo):
    """0.3141 lies between Low (0.23) and Mid (0.45): every type gives a third output, and for the deterministic
    dark_illumination and lens_blur the damage (PSNR to the clean photo) lies strictly between the two."""
    between = np.float32(0.3141)
    for name in NAMES:
        out = degradations.apply(photo, name, between, seed=0)
        assert out.shape == photo.shape
        for level in ("low", "mid"):
            assert not np.array_equal(out, degradations.apply(photo, name, level, seed=0)), (name, level)
    for name in ("dark_illumination", "lens_blur"):
        low, mid, middle = (
            psnr(degradations.apply(photo, name, level), photo) for level in ("low", "mid", between)
        )
        assert low > middle > mid, (name, low, middle, mid)


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
