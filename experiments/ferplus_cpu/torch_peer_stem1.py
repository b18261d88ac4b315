"""The PyTorch peer with its stem convolution at stride 1: the CPU recipe's model
(configs/ferplus_cpu.py, ``model.stem_stride=1`` at 48x48) as a PyTorch user would get it,
by changing one stride of ../shared/bench/torch_peer.py's network. Same flags, same JSON
line, plus ``"stem_stride": 1``.

    python experiments/ferplus_cpu/torch_peer_stem1.py --mode train --batch 64 --image-size 48 --channels-last

``PEER`` names the peer script (default ../shared/bench/torch_peer.py from the repository root).
A measuring stick, not project code.
"""

import contextlib
import importlib.util
import io
import json
import os
import sys

PEER = os.environ.get("PEER", os.path.join("..", "shared", "bench", "torch_peer.py"))


def main() -> None:
    spec = importlib.util.spec_from_file_location("torch_peer", PEER)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    build = peer.build

    def build_stem1(model, num_classes=8):
        network = build(model, num_classes)
        network[0].stride = (1, 1)  # the stem conv; everything after it is unchanged
        return network

    peer.build = build_stem1
    sys.argv = [PEER, *sys.argv[1:]]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        peer.main()
    result = json.loads(printed.getvalue().strip().splitlines()[-1])
    print(json.dumps({**result, "stem_stride": 1}))


if __name__ == "__main__":
    main()
