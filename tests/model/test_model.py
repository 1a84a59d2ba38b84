"""Networks and checkpoints: shapes, save/load round trips with metadata, unsafe and corrupt files refused."""

from __future__ import annotations

import pytest
import torch

from napari_nevus_seg import CheckpointError, build_model, load_model, save_model
from napari_nevus_seg.model.loading import default_model_path
from napari_nevus_seg.model.networks import CHECKPOINT_FORMAT, SegNet, UNet, read_checkpoint


class _Payload:
    """Unpickling this object would create a file: proof that loading ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# -------------------------------------------------------------------------------------- networks
@pytest.mark.parametrize("norm", ["batch", "group", "instance", "none"])
@pytest.mark.parametrize("depth", [1, 3, 4])
def test_unet_output_shape(depth, norm):
    net = UNet(width=4, depth=depth, norm=norm).eval()
    x = torch.randn(2, 3, 64, 48)
    assert net(x).shape == (2, 1, 64, 48)


@pytest.mark.parametrize("depth", [2, 4])
def test_segnet_output_shape(depth):
    net = SegNet(width=4, depth=depth).eval()
    assert net(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_build_model_rejects_unknown_settings():
    with pytest.raises(ValueError, match="architecture"):
        build_model("resnet")
    with pytest.raises(ValueError, match="normalisation"):
        build_model("unet", norm="layer")
    with pytest.raises(ValueError):
        build_model("unet", width=0)


def test_unet_width_changes_parameter_count():
    small, big = build_model("unet", width=8, depth=3), build_model("unet", width=16, depth=3)
    assert big.n_parameters() > 3 * small.n_parameters()


# ------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("arch", ["unet", "segnet"])
def test_save_load_round_trip_with_metadata(tmp_path, arch):
    torch.manual_seed(1)
    meta = {"name": f"test-{arch}", "training_data": "synthetic", "metrics": {"dice": 0.91}, "epochs": [1, 2]}
    m = build_model(arch, preprocess={"size": 64, "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]},
                    meta=meta, width=4, depth=3)
    m.net.eval()
    path = save_model(m, tmp_path / f"{arch}.pt")
    loaded = load_model(path)
    assert loaded.arch == arch and loaded.config == {"width": 4, "depth": 3}
    assert loaded.preprocess == m.preprocess and loaded.input_size == 64
    assert loaded.meta == meta and loaded.name == f"test-{arch}"
    assert type(loaded.net) is type(m.net)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.net(x), m.net(x))


def test_save_is_atomic_and_overwrites(tmp_path):
    m = build_model("unet", width=4, depth=2)
    p = tmp_path / "sub" / "m.pt"
    save_model(m, p)
    save_model(m, p)
    assert [f.name for f in p.parent.iterdir()] == ["m.pt"]  # no temporary files left behind


def test_default_model_ships_and_has_metadata():
    path = default_model_path()
    assert path.is_file() and path.stat().st_size < 10 * 2**20
    m = load_model()
    assert m.arch in ("unet", "segnet") and m.input_size >= 64
    assert "ISIC" in str(m.meta.get("training_data", ""))


# ---------------------------------------------------------------------------------- unsafe files
def test_pickled_object_in_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran.txt"
    m = build_model("unet", width=4, depth=2)
    ckpt = m.to_checkpoint()
    ckpt["meta"] = {"note": _Payload(marker)}
    path = tmp_path / "evil.pt"
    torch.save(ckpt, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="pickled") as refused:
        load_model(path)
    # the message names what the file asks for, and does not pass on PyTorch's advice to load it unsafely
    assert "asks for" in str(refused.value) and "weights_only" not in str(refused.value)
    with pytest.raises(CheckpointError):
        read_checkpoint(path.read_bytes())
    assert not marker.exists(), "loading the checkpoint ran the planted code"


def test_pickled_module_is_refused(tmp_path):
    path = tmp_path / "whole-module.pt"
    torch.save(UNet(width=4, depth=2), path)  # a whole pickled nn.Module (classic unsafe checkpoint)
    with pytest.raises(CheckpointError):
        load_model(path)


def test_truncated_checkpoint_is_refused(tmp_path):
    m = build_model("unet", width=4, depth=2)
    good = save_model(m, tmp_path / "good.pt")
    data = good.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(bad)


@pytest.mark.parametrize("content", [b"", b"not a model at all", None])
def test_missing_empty_and_garbage_files(tmp_path, content):
    path = tmp_path / "x.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_model(path)


def test_foreign_checkpoints_are_refused(tmp_path):
    path = tmp_path / "state_dict.pt"
    torch.save(UNet(width=4, depth=2).state_dict(), path)  # plain weights, no format tag
    with pytest.raises(CheckpointError, match="not a napari-nevus-seg model"):
        load_model(path)
    ckpt = build_model("unet", width=4, depth=2).to_checkpoint()
    ckpt["config"] = {"width": 8, "depth": 2}  # weights do not match the stated architecture
    path2 = tmp_path / "mismatch.pt"
    torch.save(ckpt, path2)
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(path2)
    ckpt = build_model("unet", width=4, depth=2).to_checkpoint()
    del ckpt["state_dict"]
    path3 = tmp_path / "nostate.pt"
    torch.save(ckpt, path3)
    with pytest.raises(CheckpointError, match="state_dict"):
        load_model(path3)
    assert ckpt["format"] == CHECKPOINT_FORMAT


def test_changed_file_is_reloaded(tmp_path):
    """load_model caches by path; a file overwritten with another model is read again."""
    path = tmp_path / "m.pt"
    a = build_model("unet", width=4, depth=2, meta={"name": "a"})
    save_model(a, path)
    assert load_model(path).name == "a"
    b = build_model("unet", width=8, depth=2, meta={"name": "bee"})
    save_model(b, path)
    assert load_model(path).name == "bee"


def test_a_replaced_file_with_the_same_size_and_time_is_read_again(tmp_path):
    # cp -p, rsync -t or unpacking an archive keep the modification time; same-architecture models have
    # the same size: the inode and change time still tell the versions apart
    import os
    import shutil

    torch.manual_seed(0)
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    save_model(build_model("unet", width=4, depth=2, meta={"name": "one"}), one)
    save_model(build_model("unet", width=4, depth=2, meta={"name": "two"}), two)
    assert one.stat().st_size == two.stat().st_size
    path = tmp_path / "m.pt"
    for src, name in ((one, "one"), (two, "two"), (one, "one")):
        tmp = tmp_path / "incoming.pt"
        shutil.copy2(src, tmp)
        os.utime(tmp, (1e9, 1e9))
        os.replace(tmp, path)                     # the same mtime and size every time
        assert load_model(path).name == name
