"""Inference: shapes, dtypes, label numbering, stacks, input types, sizes, post-processing, the default model."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from napari_nevus_seg import (
    DeviceUnavailableError,
    build_model,
    dice,
    load_model,
    postprocess,
    predict_proba,
    segment,
    synthetic_lesion_image,
)
from napari_nevus_seg.inference import pipeline as inference
from napari_nevus_seg.inference import postprocess as postprocessing
from napari_nevus_seg.inference.preprocess import as_float_rgb, as_uint8_rgb, model_input


def ellipse_image(shape=(240, 320), blobs=((0.5, 0.5, 0.25, 0.3),), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Skin-coloured image with dark elliptic blobs (cy, cx, ry, rx as fractions): (image uint8, mask bool)."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros(shape, bool)
    for cy, cx, ry, rx in blobs:
        mask |= ((yy - cy * h) / (ry * h)) ** 2 + ((xx - cx * w) / (rx * w)) ** 2 < 1
    img = np.empty((h, w, 3), np.float32)
    img[:] = (214, 166, 142)
    img[mask] = (80, 45, 30)
    img += np.random.default_rng(seed).normal(0, 4, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), mask


@pytest.fixture(scope="module")
def model():
    return load_model()


def disc_prob(shape, discs, inside=0.95, outside=0.02):
    """Probability map with discs (cy, cx, r) in pixels."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    p = np.full(shape, outside, np.float32)
    for cy, cx, r in discs:
        p[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = inside
    return p


# ------------------------------------------------------------------------- shapes and numbering
def test_segment_shape_dtype_and_numbering_by_area(model):
    img, mask = ellipse_image(blobs=((0.35, 0.3, 0.15, 0.12), (0.6, 0.7, 0.28, 0.2)))
    lab = segment(img, model=model, device="cpu")
    assert lab.shape == img.shape[:2] and lab.dtype == np.int32
    assert lab.min() == 0
    n = lab.max()
    assert n >= 2
    assert set(np.unique(lab)) == set(range(n + 1))  # 0 background, 1..N without gaps
    areas = np.bincount(lab.ravel())[1:]
    assert np.all(np.diff(areas) <= 0)  # label 1 is the largest
    assert dice(lab == 1, ndi.label(mask)[0] == 2) > 0.8  # the big blob (second in scan order) is label 1


def test_predict_proba_range_and_shape(model):
    img, mask = ellipse_image()
    p = predict_proba(img, model=model, device="cpu")
    assert p.shape == mask.shape and p.dtype == np.float32
    assert 0.0 <= p.min() and p.max() <= 1.0
    assert p[mask].mean() > 0.7 and p[~mask].mean() < 0.3


def test_stack_gives_stack_and_matches_planes(model):
    a, _ = ellipse_image(seed=1)
    b, _ = ellipse_image(blobs=((0.3, 0.3, 0.1, 0.1), (0.7, 0.7, 0.2, 0.2)), seed=2)
    stack = np.stack([a, b, a])
    labs = segment(stack, model=model, device="cpu", batch_size=2)
    assert labs.shape == (3, *a.shape[:2]) and labs.dtype == np.int32
    assert np.array_equal(labs[0], segment(a, model=model, device="cpu"))
    assert np.array_equal(labs[1], segment(b, model=model, device="cpu"))
    assert np.array_equal(labs[0], labs[2])
    probs = predict_proba(stack, model=model, device="cpu")
    assert probs.shape == (3, *a.shape[:2]) and probs.dtype == np.float32
    done = []
    segment(stack, model=model, device="cpu", progress=lambda i, n: done.append((i, n)))
    assert done == [(1, 3), (2, 3), (3, 3)]


def test_empty_stack():
    out = segment(np.zeros((0, 50, 60, 3), np.uint8), device="cpu")
    assert out.shape == (0, 50, 60) and out.dtype == np.int32


def test_uint8_and_float_input_give_the_same_result(model):
    img, _ = ellipse_image()
    ref = segment(img, model=model, device="cpu")
    assert np.array_equal(segment(img.astype(np.float32) / 255.0, model=model, device="cpu"), ref)
    assert np.array_equal(segment(img.astype(np.float64) / 255.0, model=model, device="cpu"), ref)
    assert np.array_equal(segment(img.astype(np.float32), model=model, device="cpu"), ref)  # 0..255 floats
    assert np.array_equal(segment(img.astype(np.uint16) * 257, model=model, device="cpu"), ref)


def test_large_16_bit_and_float_images_are_converted_in_bands_to_the_same_values(monkeypatch):
    from napari_nevus_seg.inference import preprocess

    def whole(a):   # the conversion without bands
        return np.rint(as_float_rgb(a) * 255.0).astype(np.uint8)

    rng = np.random.default_rng(0)
    f = rng.uniform(0, 1, (90, 70, 3)).astype(np.float32)
    f[3, 4, 0], f[5, 6, 1], f[7, 8, 2] = np.nan, np.inf, -np.inf
    g = (f * 200).astype(np.float64)  # 0..255 scale
    g[10, 10] = 250.0
    u12 = rng.integers(0, 4096, (90, 70, 3)).astype(np.uint16)   # 12-bit camera data: scaled by 4095
    u16 = rng.integers(0, 65536, (90, 70, 3)).astype(np.uint16)
    monkeypatch.setattr(preprocess, "CONVERT_BAND_PIXELS", 1000)
    for a in (f, g, u12, u16, u16.astype(np.int32)):
        assert np.array_equal(as_uint8_rgb(a), whole(a)), a.dtype
    bad = u16.astype(np.int32)
    bad[50, 50, 1] = -1
    with pytest.raises(ValueError, match="outside 0..65535"):
        as_uint8_rgb(bad)


def test_large_16_bit_image_is_converted_without_a_full_size_float_copy():
    import tracemalloc

    img = np.full((4000, 3000, 3), 40000, np.uint16)   # 72 MB in, 36 MB out; one float32 copy would be 144 MB
    tracemalloc.start()
    out = as_uint8_rgb(img)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert out.dtype == np.uint8 and int(out[0, 0, 0]) == round(40000 / 65535 * 255)
    assert peak < out.nbytes + 50e6, f"peak {peak / 1e6:.0f} MB"   # the conversion used to peak at 576 MB


def test_tiny_image(model):
    img, mask = ellipse_image(shape=(64, 64), blobs=((0.5, 0.5, 0.3, 0.3),))
    lab = segment(img, model=model, device="cpu")
    assert lab.shape == (64, 64) and lab.dtype == np.int32
    assert dice(lab > 0, mask) > 0.8


def test_large_image_matches_exact_post_processing(model):
    img, mask = ellipse_image(shape=(1500, 2100), blobs=((0.5, 0.45, 0.3, 0.25), (0.2, 0.85, 0.08, 0.06)))
    lab = segment(img, model=model, device="cpu", min_size=500, refine=False, zoom_small=False)
    assert lab.shape == mask.shape and lab.dtype == np.int32
    exact = postprocess(predict_proba(img, model=model, device="cpu"), min_size=500)
    assert lab.max() == exact.max() >= 2
    assert np.count_nonzero(lab != exact) <= 10  # float rounding exactly at the threshold only
    assert dice(lab > 0, mask) > 0.85


@pytest.mark.slow
def test_6000x4000_peak_memory_below_2gb(tmp_path):
    code = textwrap.dedent("""
        import resource, numpy as np
        from napari_nevus_seg import segment, load_model
        def peak_kib():  # VmHWM: this process image only (ru_maxrss would start at the parent's peak)
            try:
                return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1])
            except (OSError, StopIteration):
                return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        m = load_model()
        h, w = 4000, 6000
        img = np.full((h, w, 3), 205, np.uint8)
        xx = ((np.arange(w) - w / 2) / (w / 4)) ** 2
        for y in range(h):
            img[y, xx + ((y - h / 2) / (h / 4)) ** 2 < 1] = 60
        before = peak_kib()
        lab = segment(img, model=m, device="cpu")
        assert lab.shape == (h, w) and lab.dtype == np.int32 and lab.max() >= 1
        print(before, peak_kib())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    before_mb, peak_mb = (int(v) / 1024 for v in out.stdout.split()[-2:])
    assert peak_mb < 2048, f"peak memory {peak_mb:.0f} MB"
    assert peak_mb > before_mb + 90  # the measurement sees at least the 96 MB of labels


# ------------------------------------------------------------------------------ bad input, devices
@pytest.mark.parametrize("shape", [(50, 60), (50, 60, 4), (50, 60, 1), (2, 50, 60, 4)])
def test_not_rgb_is_a_clear_error(shape):
    with pytest.raises(ValueError, match="to_rgb_uint8"):
        segment(np.zeros(shape, np.uint8), device="cpu")


def test_twelve_bit_image_segments_like_its_8_bit_version():
    case = synthetic_lesion_image(seed=2)
    ref = segment(case.image, device="cpu")
    twelve = case.image.astype(np.uint16) * 16                # 12-bit camera data in uint16 (max 4080)
    assert dice(segment(twelve, device="cpu") > 0, ref > 0) > 0.99
    assert dice(predict_proba(twelve, device="cpu") > 0.5, predict_proba(case.image, device="cpu") > 0.5) > 0.99


def test_a_float_image_with_a_few_values_above_one_is_still_a_0_1_image():
    # the overshoot of a bicubic resize or of sharpening: it used to turn the image into near-black 0..255 data
    case = synthetic_lesion_image(seed=2)
    f = case.image / 255.0
    ref = segment(f, device="cpu")
    f[0, 0, 0] = 1.002
    f[5, 7] = 1.3
    np.testing.assert_array_equal(segment(f, device="cpu"), ref)


def test_bad_threshold_and_min_size():
    img, _ = ellipse_image(shape=(64, 64))
    for t in (0.0, 1.0, -0.2, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            segment(img, threshold=t, device="cpu")
        with pytest.raises(ValueError, match="threshold"):
            postprocess(np.zeros((8, 8), np.float32), threshold=t)
    for m in (-1, float("nan")):
        with pytest.raises(ValueError, match="min_size"):
            segment(img, min_size=m, device="cpu")
        with pytest.raises(ValueError, match="min_size"):
            postprocess(np.zeros((8, 8), np.float32), min_size=m)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_unavailable_device_is_a_clear_error():
    img, _ = ellipse_image(shape=(64, 64))
    with pytest.raises(DeviceUnavailableError, match="cuda"):
        segment(img, device="cuda")
    with pytest.raises(DeviceUnavailableError):
        predict_proba(img, device="tpu")


# ----------------------------------------------------------------------------------- the network
@pytest.fixture(params=["0", "1"], ids=["fp32", "bf16"])
def cpu_precision(request, monkeypatch):
    """Run a test with CPU bfloat16 autocast off (exact fp32) and forced on (what a bf16-capable CPU does)."""
    from napari_nevus_seg.model import devices

    monkeypatch.setenv("NEVUS_SEG_CPU_BF16", request.param)
    devices.cpu_has_native_bf16.cache_clear()
    yield 1e-5 if request.param == "0" else 2e-2
    devices.cpu_has_native_bf16.cache_clear()


def test_fast_network_equals_the_model_and_follows_weight_changes(cpu_precision):
    atol = cpu_precision
    torch.manual_seed(0)
    m = build_model("unet", width=8, depth=3)
    for mod in m.net.modules():  # non-trivial batch-norm statistics, so that folding matters
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    m.net.eval()
    img, _ = ellipse_image(shape=(100, 130))
    x = np.stack([model_input(img, m.input_size)])
    fast = inference._forward(m, x, torch.device("cpu"), tta=False)
    with torch.no_grad():
        t = inference.to_batch_tensor(x, m.preprocess["mean"], m.preprocess["std"])
        ref = torch.sigmoid(m.net(t))[:, 0]
    assert torch.allclose(fast.float(), ref, atol=atol)
    with torch.no_grad():  # the model is changed in place (as fine-tuning does): the cache must follow
        m.net.head.bias += 3.0
    fast2 = inference._forward(m, x, torch.device("cpu"), tta=False)
    with torch.no_grad():
        ref2 = torch.sigmoid(m.net(t))[:, 0]
    assert torch.allclose(fast2.float(), ref2, atol=atol) and fast2.mean() > fast.mean() + 0.1


def test_tta_is_flip_equivariant(model):
    img, _ = ellipse_image(shape=(128, 128), blobs=((0.4, 0.35, 0.2, 0.25),))
    p = predict_proba(img, model=model, device="cpu", tta=True)
    pf = predict_proba(img[:, ::-1], model=model, device="cpu", tta=True)
    assert np.abs(pf[:, ::-1] - p).max() < 1e-3
    pv = predict_proba(img[::-1], model=model, device="cpu", tta=True)
    assert np.abs(pv[::-1] - p).max() < 1e-3


# ------------------------------------------------------------------------------ post-processing
def test_postprocess_fills_holes():
    p = disc_prob((100, 120), [(50, 60, 30)])
    p[45:55, 55:65] = 0.1  # a hole inside the lesion
    lab = postprocess(p, min_size=1)
    assert lab.max() == 1 and np.all(lab[45:55, 55:65] == 1)
    assert np.all(postprocess(p, min_size=1, fill_holes=False)[45:55, 55:65] == 0)


def test_postprocess_removes_specks_and_numbers_by_area():
    p = disc_prob((200, 200), [(50, 50, 20), (140, 140, 35), (20, 180, 2)])  # the last is a 12-pixel speck
    lab = postprocess(p, min_size=40)
    assert lab.dtype == np.int32 and lab.max() == 2
    assert lab[140, 140] == 1 and lab[50, 50] == 2 and lab[20, 180] == 0
    assert postprocess(p, min_size=1).max() == 3
    default = postprocess(p)  # default min size: 0.1 % of 40000 px = 40 px
    assert default.max() == 2


def test_postprocess_largest_only_and_empty():
    p = disc_prob((200, 200), [(50, 50, 20), (140, 140, 35)])
    lab = postprocess(p, largest_only=True)
    assert lab.max() == 1 and lab[140, 140] == 1 and lab[50, 50] == 0
    empty = postprocess(np.zeros((30, 40), np.float32))
    assert empty.shape == (30, 40) and empty.dtype == np.int32 and empty.max() == 0


def test_postprocess_threshold():
    yy, xx = np.mgrid[:101, :101]
    p = (1 - np.hypot(yy - 50, xx - 50) / 100).astype(np.float32)  # cone: radius where p > t is 100 (1 - t)
    for t, r in ((0.5, 50), (0.8, 20)):
        area = np.count_nonzero(postprocess(p, threshold=t, min_size=1))
        assert abs(area - np.pi * r * r) / (np.pi * r * r) < 0.05
    with pytest.raises(ValueError):
        postprocess(p[None])


def test_fill_holes_equals_scipy():
    rng = np.random.default_rng(0)
    for _ in range(5):
        m = ndi.gaussian_filter(rng.normal(size=(80, 90)), 2) > 0.05
        assert np.array_equal(postprocessing.fill_holes(m), ndi.binary_fill_holes(m))


def test_upsampling_equals_torch_interpolate():
    small = torch.rand(16, 16)
    ref = F.interpolate(small[None, None], size=(97, 131), mode="bilinear", align_corners=False)[0, 0].numpy()
    assert np.abs(postprocessing.upsample_proba(small, (97, 131)) - ref).max() < 1e-5
    banded = np.concatenate([b.numpy() for _, _, b in postprocessing.iter_upsampled(small, (97, 131), 500)])
    assert np.abs(banded - ref).max() < 1e-5


def test_large_image_labels_match_the_exact_computation_on_random_maps():
    rng = np.random.default_rng(3)
    for shape in ((1300, 1900), (2100, 900)):
        s = ndi.gaussian_filter(rng.normal(size=(128, 128)), 4)
        small = torch.from_numpy((1 / (1 + np.exp(-40 * (s - 0.03)))).astype(np.float32))
        for fill in (True, False):
            fast = postprocessing.labels_from_small(small, shape, min_size=200, fill=fill)
            exact = postprocess(postprocessing.upsample_proba(small, shape), min_size=200, fill_holes=fill)
            assert fast.max() == exact.max() >= 3
            assert np.count_nonzero((fast > 0) != (exact > 0)) <= 20
            assert np.count_nonzero(fast != exact) <= 20


# --------------------------------------------------------------------------- the default model
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_default_model_finds_a_dark_synthetic_lesion(model, seed):
    case = synthetic_lesion_image(seed=seed, colours=["dark_brown", "black"])
    lab = segment(case.image, model=model, device="cpu")
    assert dice(lab > 0, case.mask) >= 0.8
    assert dice(lab == 1, case.mask) >= 0.8  # label 1, the largest, is the lesion


def test_model_argument_accepts_a_path(tmp_path, model):
    img, _ = ellipse_image(shape=(96, 96), blobs=((0.5, 0.5, 0.3, 0.3),))
    from napari_nevus_seg import save_model

    path = save_model(model, tmp_path / "copy.pt")
    assert np.array_equal(segment(img, model=str(path), device="cpu"), segment(img, model=model, device="cpu"))


@pytest.mark.parametrize("seed", range(6))
def test_default_model_finds_every_lesion_of_a_multi_lesion_image(model, seed):
    # seed 1 is the "synthetic lesions" sample users open first; the model never trained on seeds < 100000
    case = synthetic_lesion_image(seed=seed, n_lesions=3)
    lab = segment(case.image, model=model, device="cpu")
    assert lab.max() == 3
    for k in range(1, 4):
        truth = case.labels == k
        assert np.count_nonzero(truth & (lab > 0)) > 0.8 * np.count_nonzero(truth)
    assert dice(lab > 0, case.mask) > 0.9


@pytest.mark.parametrize("refine", [True, False])
def test_segment_returns_its_probabilities_from_one_network_pass(model, monkeypatch, refine):
    import napari_nevus_seg.inference.pipeline as inference

    case = synthetic_lesion_image(seed=2, n_lesions=2)
    stack = np.stack([case.image, case.image[::-1]])
    expected_labels = segment(stack, model=model, device="cpu", refine=refine)
    expected_prob = predict_proba(stack, model=model, device="cpu")
    calls = []
    real_forward = inference._forward
    monkeypatch.setattr(inference, "_forward", lambda *a, **k: calls.append(1) or real_forward(*a, **k))
    labels, prob = segment(stack, model=model, device="cpu", refine=refine, return_proba=True)
    assert len(calls) == 1                                   # one batch through the network, not two
    np.testing.assert_array_equal(labels, expected_labels)
    assert prob.dtype == np.float32 and prob.shape == stack.shape[:3]
    np.testing.assert_allclose(prob, expected_prob, atol=1e-6)


@pytest.mark.parametrize("fill", [0, 128, np.nan])
def test_a_single_colour_image_has_no_lesion_and_says_so(model, fill):
    """The network always saw a lesion in training and outlines one even in a black frame (5 'lesions')."""
    img = np.full((120, 160, 3), fill, np.float32 if np.isnan(fill) else np.uint8)
    with pytest.warns(UserWarning, match="single colour"):
        lab = segment(img, model=model)
    assert lab.shape == (120, 160) and lab.max() == 0
    with pytest.warns(UserWarning, match="single colour"):
        assert predict_proba(img, model=model).max() == 0
    stack = np.zeros((2, 120, 160, 3), np.uint8)
    stack[1] = synthetic_lesion_image(seed=3, shape=(120, 160)).image
    with pytest.warns(UserWarning, match="plane 0 of the stack"):
        lab = segment(stack, model=model)
    assert lab[0].max() == 0 and lab[1].max() >= 1


@pytest.mark.parametrize("refine", [True, False])
def test_labels_from_map_equals_segment_without_running_the_network(refine, monkeypatch):
    from napari_nevus_seg import labels_from_map, load_model, network_map, segment, synthetic_lesion_image
    from napari_nevus_seg.inference import pipeline

    img = synthetic_lesion_image(seed=4, shape=(192, 256), n_lesions=2).image
    model = load_model()
    plane, small = network_map(img, model=model)
    calls = []
    forward = pipeline._forward
    monkeypatch.setattr(pipeline, "_forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    for threshold, min_size, largest in ((0.5, None, False), (0.3, 50, False), (0.7, None, True)):
        labels, proba, conf = labels_from_map(plane, small, model, threshold=threshold, min_size=min_size,
                                              largest_only=largest, refine=refine, return_proba=True,
                                              return_confidence=True, zoom_small=False)
        assert not calls   # the map was enough (the zoomed second look, which runs the network, is off)
        want, want_proba, want_conf = segment(img, model=model, threshold=threshold, min_size=min_size,
                                              largest_only=largest, refine=refine, return_proba=True,
                                              return_confidence=True, zoom_small=False)
        calls.clear()
        np.testing.assert_array_equal(labels, want)
        np.testing.assert_allclose(proba, want_proba, atol=1e-6)
        assert conf == pytest.approx(want_conf)
    assert labels_from_map(plane, small, model, threshold=0.5, refine=refine).shape == img.shape[:2]
