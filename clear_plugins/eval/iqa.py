"""Quality of restored images (Table 4): BRISQUE and NIQE (no reference), PSNR and SSIM against the clean image.

Everything runs offline from parameters installed with the packages:

* BRISQUE — the ``brisque`` package's LIVE-trained SVM (``brisque/models/svm.txt``, read by libsvm) and its
  feature scaling; the features are computed with that package's own functions. Its ``score()`` fails under
  NumPy 2 (a one-element array where a scalar is expected), so :func:`brisque` calls the feature, scaling and
  prediction steps itself and flattens the features in between. The scaling file is a pickle: it is read with
  an unpickler that admits only plain containers and numbers.
* NIQE — :mod:`clear_plugins.eval.niqe` with the pristine model shipped in this package.
* PSNR / SSIM — ``skimage.metrics`` on 8-bit RGB; the clean image is resized (bicubic) to the restored size when
  they differ.

:data:`IMPLEMENTATIONS` names the code that produced each number; reports print it.
"""

from __future__ import annotations

import io
import pickle
from functools import cache
from typing import Any

import numpy as np

IMPLEMENTATIONS: dict[str, str] = {
    "brisque": "brisque (PyPI) LIVE SVM + its feature code, called step by step by clear_plugins.eval.iqa",
    "niqe": "clear_plugins.eval.niqe with the MATLAB release's pristine model (BasicSR conversion), shipped",
    "psnr": "skimage.metrics.peak_signal_noise_ratio (8-bit RGB)",
    "ssim": "skimage.metrics.structural_similarity (8-bit RGB, channel_axis=2)",
}
"""Which implementation produced each metric."""

BRISQUE_KERNEL = 7
BRISQUE_SIGMA = 7 / 6
"""The 7x7 Gaussian window with sigma 7/6 of the BRISQUE paper (Mittal et al., 2012)."""


class _PlainUnpickler(pickle.Unpickler):
    """Admits only builtin containers and numbers: the scaling file holds ``{"min_": [...], "max_": [...]}``."""

    def find_class(self, module: str, name: str) -> Any:
        """Refuse every class: plain data never needs one."""
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the BRISQUE scaling file")


@cache
def _brisque_model() -> Any:
    import importlib.resources

    from brisque import BRISQUE
    from libsvm import svmutil

    models = importlib.resources.files("brisque.models")
    scorer = BRISQUE.__new__(BRISQUE)  # skip __init__: it unpickles with the unrestricted loader
    scorer.url = False
    with importlib.resources.as_file(models.joinpath("svm.txt")) as path:
        scorer.model = svmutil.svm_load_model(str(path))
    data = models.joinpath("normalize.pickle").read_bytes()
    scorer.scale_params = _PlainUnpickler(io.BytesIO(data)).load()
    return scorer


def _rgb(image: Any) -> np.ndarray:
    array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return array[..., :3]


def brisque(image: Any) -> float:
    """BRISQUE of an image (PIL or ``[H, W, 3]`` uint8); lower is better."""
    import cv2
    import skimage.color

    scorer = _brisque_model()
    gray = skimage.color.rgb2gray(_rgb(image))
    half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    features = [
        scorer.calculate_brisque_features(g, kernel_size=BRISQUE_KERNEL, sigma=BRISQUE_SIGMA)
        for g in (gray, half)
    ]
    flat = np.array([np.ravel(np.asarray(f, dtype=np.float64))[0] for f in np.concatenate(features)])
    return float(scorer.calculate_image_quality_score(flat))


def niqe(image: Any) -> float:
    """NIQE of an image (PIL or ``[H, W, 3]`` uint8), at least 192 x 192; lower is better."""
    from clear_plugins.eval.niqe import niqe as compute

    return compute(_rgb(image))


def psnr_ssim(image: Any, clean: Any) -> tuple[float, float]:
    """PSNR (dB) and SSIM of ``image`` against ``clean`` (resized to ``image``'s size when they differ)."""
    from PIL import Image
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    test = _rgb(image)
    if hasattr(clean, "size") and not isinstance(clean, np.ndarray):
        reference = clean.convert("RGB")
    else:
        reference = Image.fromarray(_rgb(clean))
    if reference.size != (test.shape[1], test.shape[0]):
        reference = reference.resize((test.shape[1], test.shape[0]), Image.BICUBIC)
    ref = np.asarray(reference)
    with np.errstate(divide="ignore"):  # identical images: PSNR is +inf, not a warning
        psnr = float(peak_signal_noise_ratio(ref, test, data_range=255))
    ssim = float(structural_similarity(ref, test, channel_axis=2, data_range=255))
    return psnr, ssim


def measure(image: Any, clean: Any | None) -> dict[str, float | None]:
    """Every metric of one image; NIQE is ``None`` below 192 x 192 and PSNR/SSIM when there is no clean image."""
    from clear_plugins.eval.niqe import BLOCK

    array = _rgb(image)
    small = min(array.shape[:2]) < 2 * BLOCK
    result: dict[str, float | None] = {"brisque": brisque(array), "niqe": None if small else niqe(array)}
    if clean is None:
        result.update(psnr=None, ssim=None)
    else:
        result["psnr"], result["ssim"] = psnr_ssim(image, clean)
    return result
