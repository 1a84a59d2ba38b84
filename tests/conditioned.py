"""A model of two outline conventions built from the default model, whose conventions outline differently."""

from __future__ import annotations

import torch

from napari_nevus_seg import build_model, load_model

NAMES = ["loose", "tight"]


def conditioned_default(convention: int = 1) -> object:
    """The default network with two convention planes: "loose" (0) pushes the first layer's features, so it
    outlines differently from "tight" (1), which is the default network itself. Stored convention
    ``convention``; refinement off for "loose", on for "tight"; named and described in ``meta``."""
    plain = load_model()
    model = build_model("unet", dict(plain.preprocess), conventions=2, convention=convention,
                        **{k: v for k, v in plain.config.items() if k in ("width", "depth", "norm")})
    state = dict(plain.net.state_dict())
    w = state["down.0.0.weight"]
    planes = torch.zeros(w.shape[0], 2, *w.shape[2:])
    planes[:, 0] = 0.05 * torch.sign(w.sum(dim=1))    # "loose": more of what the filters respond to
    state["down.0.0.weight"] = torch.cat([w, planes], 1)
    model.net.load_state_dict(state)
    model.net.eval()
    model.meta.update(name="two conventions", conventions=list(NAMES),
                      convention_refine={"loose": False, "tight": True},
                      convention_descriptions={"loose": "a little outside the pigment",
                                               "tight": "on the pigment edge"})
    return model
