"""Augmentation keeps image and mask aligned, stays in range, and the vignette behaves like a dermoscope's."""

import torch

from napari_nevus_seg.training.augment import AugmentConfig, augment_batch

NO_PHOTO = dict(brightness=0, contrast=0, saturation=0, channel_gain=0, gamma=0, hair_prob=0, blur_prob=0,
                flatten_prob=0)


def _blobs(n=6, size=64):
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    y = torch.zeros(n, 1, size, size)
    for i in range(n):
        cy, cx = (torch.rand(2, generator=g) * size * 0.5 + size * 0.25).tolist()
        ry, rx = (torch.rand(2, generator=g) * size * 0.15 + size * 0.1).tolist()
        y[i, 0] = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).float()
    x = (0.8 - 0.6 * y).repeat(1, 3, 1, 1)  # dark lesion on light skin
    return x, y


def test_geometry_keeps_mask_on_the_lesion():
    x, y = _blobs()
    cfg = AugmentConfig(**NO_PHOTO, vignette_prob=0)
    xa, ya = augment_batch(x, y, cfg, torch.Generator().manual_seed(3))
    assert xa.shape == x.shape and ya.shape == y.shape
    assert set(torch.unique(ya).tolist()) <= {0.0, 1.0}
    dark = (xa[:, 0:1] < 0.5).float()
    agreement = (dark == ya).float().mean().item()
    assert agreement > 0.98
    assert not torch.equal(ya, y)  # something did move


def test_photometric_stays_in_range_and_is_seeded():
    x, y = _blobs()
    a = augment_batch(x, y, AugmentConfig(), torch.Generator().manual_seed(5))
    b = augment_batch(x, y, AugmentConfig(), torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].min() >= 0 and a[0].max() <= 1


def test_vignette_darkens_corners_and_cuts_the_mask():
    x = torch.full((8, 3, 64, 64), 0.8)
    y = torch.ones(8, 1, 64, 64)  # a lesion that fills the field
    cfg = AugmentConfig(**NO_PHOTO, rotate=False, flip=False, scale=(1, 1), shift=0, vignette_prob=1.0)
    xa, ya = augment_batch(x, y, cfg, torch.Generator().manual_seed(0))
    corners_x = xa[:, :, [0, 0, -1, -1], [0, -1, 0, -1]].mean(dim=1)
    corners_y = ya[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners_y == 0).float().mean() > 0.5  # most corners fall outside the circle ...
    assert corners_x[corners_y == 0].max() < 0.3  # ... and those are dark
    assert ya[:, :, 32, 32].min() == 1 and xa[:, :, 32, 32].min() > 0.75  # the centre is untouched


def test_light_config_has_no_vignette():
    assert AugmentConfig.light().vignette_prob == 0 and AugmentConfig().vignette_prob > 0


def test_blur_softens_texture_and_leaves_the_mask():
    x = torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(3, 1, 48, 48)
    y[:, :, 10:30, 12:40] = 1
    cfg = AugmentConfig(**{**NO_PHOTO, "blur_prob": 1.0}, rotate=False, flip=False, scale=(1, 1), shift=0,
                        vignette_prob=0)
    xa, ya = augment_batch(x, y, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(ya, y)
    assert xa.std() < 0.5 * x.std()  # pixel noise is smoothed away
    assert abs(xa.mean().item() - x.mean().item()) < 0.02  # brightness kept


def test_vignette_is_dark_but_not_flat():
    x = torch.full((2, 3, 64, 64), 0.8)
    cfg = AugmentConfig(**NO_PHOTO, rotate=False, flip=False, scale=(1, 1), shift=0, vignette_prob=1.0)
    xa, _ = augment_batch(x, torch.ones(2, 1, 64, 64), cfg, torch.Generator().manual_seed(2))
    corner = xa[:, :, :3, :3]
    assert corner.mean() < 0.2 and corner.std() > 0.005


def test_flatten_gives_few_flat_colours():
    x = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    y = torch.ones(2, 1, 48, 48)
    cfg = AugmentConfig(**{**NO_PHOTO, "flatten_prob": 1.0}, rotate=False, flip=False, scale=(1, 1), shift=0,
                        vignette_prob=0)
    xa, ya = augment_batch(x, y, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(ya, y)
    for i in range(2):
        assert len(torch.unique(xa[i, 0])) <= 7  # posterised to 3-6 levels (+ the level 0)


def _large_and_small(size=96):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    large = (yy >= 0.06 * size) & (yy < 0.92 * size) & (xx >= 0.1 * size) & (xx < 0.96 * size)
    small = (yy - size * 0.45) ** 2 + (xx - size * 0.55) ** 2 <= (size * 0.08) ** 2
    y = torch.stack([large, small]).float()[:, None]
    return (0.8 - 0.6 * y).repeat(1, 3, 1, 1), y  # dark lesions on light skin


def test_fill_crops_inside_large_lesions_only():
    x, y = _large_and_small()
    cfg = AugmentConfig(**NO_PHOTO, vignette_prob=0, fill_prob=1.0)
    fractions = torch.stack([augment_batch(x, y, cfg, torch.Generator().manual_seed(s))[1].mean(dim=(1, 2, 3))
                             for s in range(8)])
    assert fractions[:, 0].min() > 0.85  # the large lesion fills (almost) the whole field every time
    assert fractions[:, 1].max() < 0.2   # a small lesion is not blown up into a blur: ordinary warp
    xa, ya = augment_batch(x, y, cfg, torch.Generator().manual_seed(0))
    assert ((xa[:, 0:1] < 0.5).float() == ya).float().mean() > 0.98  # image and mask stay aligned


def test_fill_is_off_by_default_and_changes_what_is_seen():
    x, y = _large_and_small()
    assert AugmentConfig().fill_prob == 0.0

    def large_fraction(fill_prob):
        cfg = AugmentConfig(**NO_PHOTO, vignette_prob=0, fill_prob=fill_prob)
        return torch.stack([augment_batch(x, y, cfg, torch.Generator().manual_seed(s))[1][0].mean()
                            for s in range(16)])

    plain, filled = large_fraction(0.0), large_fraction(1.0)
    assert (plain < 0.95).sum() >= 8  # the ordinary warp mostly keeps skin around the large lesion
    assert filled.min() > 0.85 and filled.mean() > plain.mean() + 0.1


def test_ink_ring_darkens_a_ring_and_leaves_the_mask():
    x = torch.full((6, 3, 96, 96), 0.8)
    y = torch.zeros(6, 1, 96, 96)
    y[:, :, 40:56, 40:56] = 1
    cfg = AugmentConfig(**NO_PHOTO, rotate=False, flip=False, scale=(1, 1), shift=0, vignette_prob=0, ink_prob=1.0)
    xa, ya = augment_batch(x, y, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(ya, y)                                      # ink is never lesion
    inked = (xa.mean(dim=1) < 0.6).float().mean(dim=(1, 2))
    assert inked.min() > 0.02 and inked.max() < 0.5                 # a ring, not a blot
    assert torch.allclose(xa[:, :, 48, 48], x[:, :, 48, 48])        # the centre (the lesion) is untouched


def test_sticker_is_flat_enters_from_the_frame_and_cuts_the_mask():
    x = torch.full((6, 3, 96, 96), 0.5)
    y = torch.ones(6, 1, 96, 96)
    cfg = AugmentConfig(**NO_PHOTO, rotate=False, flip=False, scale=(1, 1), shift=0, vignette_prob=0,
                        sticker_prob=1.0)
    xa, ya = augment_batch(x, y, cfg, torch.Generator().manual_seed(0))
    cut = ya[:, 0] == 0
    assert (cut.float().mean(dim=(1, 2)) > 0.01).all()
    frame = torch.cat([cut[:, 0], cut[:, -1], cut[:, :, 0], cut[:, :, -1]], dim=1)
    assert frame.any(dim=1).all()                                   # each disc touches the frame
    for i in range(6):
        assert xa[i][:, cut[i]].std(dim=1).max() < 0.1              # flat colour where the mask was cut


def test_skin_crops_show_lesion_free_skin_where_there_is_room():
    x, y = _large_and_small()
    cfg = AugmentConfig(**NO_PHOTO, vignette_prob=0, skin_prob=1.0)
    for s in range(8):
        xa, ya = augment_batch(x, y, cfg, torch.Generator().manual_seed(s))
        assert ya[1].sum() == 0                            # the small lesion leaves room: skin only
        assert (xa[1, 0] < 0.5).float().mean() < 0.01      # and the image shows no lesion either
        assert ya[0].mean() > 0.3                          # the large lesion leaves none: ordinary warp
    assert AugmentConfig().skin_prob == 0.0
