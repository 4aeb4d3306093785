"""IQA of restored images (Table 4): published values on standard images, and nothing downloaded."""

from __future__ import annotations

import io
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clear_plugins.eval import iqa, niqe

DATA = Path(__file__).parent / "data" / "iqa"


def test_brisque_matches_the_published_value_of_the_packages_sample_image():
    # The brisque package's README: obj.score(<brisque/tests/sample-image.jpg>) -> 34.84883848208594. We get
    # 34.7134 with today's NumPy/SciPy/scikit-image/OpenCV/libjpeg: the same model and features, 0.4% apart.
    value = iqa.brisque(Image.open(DATA / "sample-image.jpg"))
    assert value == pytest.approx(34.84883848208594, abs=0.2)


def test_niqe_matches_the_published_matlab_value_of_baboon():
    # MATLAB R2021a niqe on Set14 baboon.png: 5.72957338 (quoted in BasicSR's basicsr/metrics/niqe.py).
    value = iqa.niqe(Image.open(DATA / "baboon.png"))
    assert value == pytest.approx(5.72957338, abs=1e-3)


def test_quality_falls_with_degradation():
    from clear_plugins import degradations

    clean = Image.open(DATA / "baboon.png").convert("RGB")
    noisy = degradations.apply(clean, "gaussian_noise", "hard", seed=0)
    assert iqa.niqe(noisy) > iqa.niqe(clean) and iqa.brisque(noisy) > iqa.brisque(clean)
    psnr, ssim = iqa.psnr_ssim(noisy, clean)
    mild_psnr, mild_ssim = iqa.psnr_ssim(degradations.apply(clean, "gaussian_noise", "low", seed=0), clean)
    assert 5 < psnr < mild_psnr and ssim < mild_ssim < 1
    assert iqa.psnr_ssim(clean, clean)[1] == pytest.approx(1.0)
    half = clean.resize((240, 246))
    assert iqa.psnr_ssim(half, clean)[0] > 15  # the clean image is resized to the restored size


def test_small_images_get_brisque_but_no_niqe():
    small = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    result = iqa.measure(small, None)
    assert result["niqe"] is None and result["psnr"] is None and np.isfinite(result["brisque"])
    with pytest.raises(ValueError, match="192x192"):
        niqe.niqe(np.asarray(small))


def test_matlab_imresize_half_keeps_constants_and_sizes():
    image = np.full((97, 50), 7.0)
    half = niqe.matlab_imresize_half(image)
    assert half.shape == (49, 25) and np.allclose(half, 7.0)
    ramp = np.tile(np.arange(32.0), (4, 1))
    # a cubic kernel reproduces a linear ramp away from the borders: output k samples the pair centre 2k + 0.5
    interior = niqe.matlab_imresize_half(ramp)[:, 3:13]
    assert np.allclose(interior, 2 * np.arange(3, 13) + 0.5)


def test_the_scaling_file_loader_admits_only_plain_data():
    payload = pickle.dumps({"min_": [0.0], "max_": [1.0]})
    assert iqa._PlainUnpickler(io.BytesIO(payload)).load() == {"min_": [0.0], "max_": [1.0]}
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        iqa._PlainUnpickler(io.BytesIO(pickle.dumps(Path("x")))).load()


def test_nothing_is_downloaded(monkeypatch, tmp_path):
    """The whole IQA path and an evaluation with ``report --iqa`` run with every network connection refused."""
    import urllib.request

    from eval_helpers import tiny_benches, tiny_model

    from clear_plugins.eval.config import EvalConfig
    from clear_plugins.eval.report import write_report
    from clear_plugins.eval.runner import run_eval

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    iqa._brisque_model.cache_clear()
    niqe.pristine_model.cache_clear()
    photo = Image.open(DATA / "baboon.png").convert("RGB").crop((0, 0, 200, 200))
    values = iqa.measure(photo.rotate(180), photo)
    assert set(values) == {"brisque", "niqe", "psnr", "ssim"} and all(np.isfinite(list(values.values())))
    benches = tiny_benches(tmp_path)
    config = EvalConfig(
        benchmarks=tuple(map(str, benches)),
        output_dir=str(tmp_path / "run"),
        levels=("hard",),
        progress=False,
        save_restored=True,
    )
    run_eval(tiny_model(keep_restored=True), config)
    report = write_report(tmp_path / "run", iqa=True)
    assert "hard / restored" in report["markdown"].read_text()
