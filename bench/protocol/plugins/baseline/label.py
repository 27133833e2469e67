"""The tutorial's label.py (eKuiper docs, guide/ai/python_tensorflow_lite_tutorial.md;
full code in docs/resources/pyai.zip), which follows TensorFlow's label_image.py:
every call loads the interpreter, base64-decodes the argument, decodes the whole
image with Pillow, resizes it to the input size (Pillow's default filter), invokes,
reads the labels file and formats the top 5 as {"confidence", "label"}.

One deliberate change: the runtime. The tutorial imports ``tflite_runtime``; its last
wheels (2.14) are built against NumPy 1.x, so under NumPy 2 the import fails
("A module that was compiled using NumPy 1.x cannot be run in NumPy 2.x"), and there
are no wheels for Python >= 3.12. We use ``ai_edge_litert``'s Interpreter, the same
API from tflite_runtime's successor (and with XNNPACK on, so the baseline's invoke is
as fast as pyai's); tflite_runtime is used only when it is all there is, or when
PYAI_BENCH_RUNTIME=tflite_runtime (bench/protocol/report.py's optional "tutorial's own
runtime" row, run from a venv with tflite-runtime and numpy<2).
"""
import base64
import io
import os

import numpy as np
from PIL import Image

if os.environ.get("PYAI_BENCH_RUNTIME") == "tflite_runtime":
    # The tutorial's own runtime, for the bench's optional row (a NumPy 1.x venv).
    from tflite_runtime.interpreter import Interpreter
else:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - NumPy 1.x boxes
        from tflite_runtime.interpreter import Interpreter

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.environ.get("PYAI_BENCH_MODEL", os.path.join(HERE, "mobilenet_v2_1.0_224_quant.tflite"))
LABELS = os.environ.get("PYAI_BENCH_LABELS", os.path.join(HERE, "labels.txt"))


def load_labels(filename):
    with open(filename, "r") as f:
        return [line.strip() for line in f.readlines()]


def label(file_bytes):
    # Load the model file
    interpreter = Interpreter(model_path=MODEL)
    interpreter.allocate_tensors()
    input_details = interpreter.get_input_details()
    output_details = interpreter.get_output_details()

    # Preprocess the input image: decode it, resize it to the model's input size
    floating_model = input_details[0]["dtype"] == np.float32
    height = input_details[0]["shape"][1]
    width = input_details[0]["shape"][2]
    img = Image.open(io.BytesIO(base64.b64decode(file_bytes))).convert("RGB").resize((width, height))
    input_data = np.expand_dims(img, axis=0)
    if floating_model:
        input_data = (np.float32(input_data) - 127.5) / 127.5

    # Set model input, call inference, get result tensor
    interpreter.set_tensor(input_details[0]["index"], input_data)
    interpreter.invoke()
    output_data = interpreter.get_tensor(output_details[0]["index"])

    # Post process the result and turn it into the output format
    results = np.squeeze(output_data)
    top_k = results.argsort()[-5:][::-1]
    labels = load_labels(LABELS)
    result = []
    for i in top_k:
        if floating_model:
            confidence = float(results[i])
        else:
            confidence = float(results[i] / 255.0)
        result.append({"confidence": confidence, "label": "{}:{}".format(i, labels[i])})
    return result
