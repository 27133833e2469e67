"""Smoke test for the emulated arm64 environment (run it UNDER python-arm64).

Usage: tests/arm64/python-arm64 tests/arm64/check_env.py MODEL.tflite IMAGE.jpg [LABELS.txt]

Prints the machine, the versions of the plugin's dependencies, and the top-1
class of IMAGE under MODEL (LiteRT, 2 threads). Exits non-zero on any failure.
"""
import importlib
import platform
import sys
import time


def main(argv):
    if len(argv) not in (3, 4):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    model_path, image_path = argv[1], argv[2]
    labels_path = argv[3] if len(argv) == 4 else None

    machine = platform.machine()
    print("machine:", machine)
    print("python:", platform.python_version())
    if machine != "aarch64":
        print("FAIL: not running on aarch64", file=sys.stderr)
        return 1

    for name in ("numpy", "simplejpeg", "pybase64", "PIL", "ai_edge_litert"):
        mod = importlib.import_module(name)
        print("import %-15s %s" % (name, getattr(mod, "__version__", "?")))
    try:
        native = importlib.import_module("native_preproc")
    except ImportError as e:
        print("import native_preproc  not present (%s)" % e)
    else:
        print("import native_preproc  %s" % native.__file__)

    import numpy as np
    import simplejpeg
    from PIL import Image
    from ai_edge_litert.interpreter import Interpreter

    t = time.monotonic()
    interp = Interpreter(model_path=model_path, num_threads=2)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    _, h, w, _ = inp["shape"]
    print("model: input %s %s, output %s %s (load %.2f s)"
          % ([int(x) for x in inp["shape"]], np.dtype(inp["dtype"]).name,
             [int(x) for x in out["shape"]], np.dtype(out["dtype"]).name, time.monotonic() - t))

    with open(image_path, "rb") as f:
        rgb = simplejpeg.decode_jpeg(f.read(), colorspace="RGB")
    print("image: %dx%d" % (rgb.shape[1], rgb.shape[0]))
    img = np.asarray(Image.fromarray(rgb).resize((int(w), int(h)), Image.BILINEAR))
    if inp["dtype"] == np.uint8:
        data = img.astype(np.uint8)
    else:
        data = (img.astype(np.float32) - 127.5) / 127.5
    interp.set_tensor(inp["index"], data[np.newaxis])

    t = time.monotonic()
    interp.invoke()
    dt = time.monotonic() - t
    scores = interp.get_tensor(out["index"])[0]
    top = int(np.argmax(scores))
    label = ""
    if labels_path:
        with open(labels_path) as f:
            labels = [line.strip() for line in f]
        if top < len(labels):
            label = " (%s)" % labels[top]
    print("invoke: %.2f s (emulated, not meaningful)" % dt)
    print("top-1 index: %d%s score %s" % (top, label, scores[top]))
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
