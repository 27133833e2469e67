"""The floor in one process: pyai's runtime (transport) + the bare scaled JPEG decode
(simplejpeg with min_width/min_height at the classifier's decode size for the frame:
its crop region's need) + the bare
invoke (pyai.model.Model.run, same model and thread count as the plugin's config),
then a constant reply. No base64, no resize into the tensor, no post-processing.

The frame's JPEG bytes are loaded at start-up (PYAI_BENCH_FRAMES) and picked by the
length of the base64 argument, so the request is the same one pyai gets but is not
decoded here.
"""
import os
import sys

for _p in reversed(os.environ.get("PYAI_BENCH_PATHS", "").split(os.pathsep)):
    if _p:
        sys.path.insert(0, _p)

import simplejpeg  # noqa: E402

from benchlib import CONSTANT_RESULT  # noqa: E402
from pyai.config import load_config  # noqa: E402
from pyai.model import Model  # noqa: E402
from pyai.plugin.runtime import PluginRuntime  # noqa: E402


def b64_len(n: int) -> int:
    return 4 * ((n + 2) // 3)


class Floor:
    def __init__(self):
        cfg = load_config(os.environ["PYAI_BENCH_PYAI_DIR"])
        self.model = Model(cfg.model, cfg.interpreter_threads)
        self.frames = {}
        for path in os.environ.get("PYAI_BENCH_FRAMES", "").split(os.pathsep):
            if path:
                with open(path, "rb") as f:
                    data = f.read()
                height, width = simplejpeg.decode_jpeg_header(data)[:2]
                size = cfg.crop.decode_size(width, height, self.model.input_size, cfg.decode_oversample)
                self.frames[b64_len(len(data))] = (data, size)
        self.model.input_tensor[...] = 0
        self.model.run()

    def validate(self, args):
        return ""

    def is_aggregate(self):
        return False

    def exec(self, args):
        data, (min_w, min_h) = self.frames[len(args[0])]
        simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=min_w, min_height=min_h)
        self.model.run()
        return CONSTANT_RESULT


if __name__ == "__main__":
    floor = Floor()
    PluginRuntime("bench_floor", {"labelImage": lambda: floor}).run()
