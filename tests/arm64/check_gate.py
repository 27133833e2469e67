"""Run under the emulated aarch64 python: the gate's signatures and verdicts for
frame pairs written by tests/test_arm64.py on x86-64, printed as one JSON line
(``result: {...}``) for the test to compare with its own, bit for bit.

    python tests/arm64/check_gate.py DIR    (DIR/<name>.ref.jpg and DIR/<name>.jpg)
"""

import hashlib
import json
import platform
import sys
from pathlib import Path
from typing import Dict

from pyai.gate import DEFAULT_THRESHOLD, Gate, jpeg_signature

BOX = (0, 0, 1280, 720)


def verdicts(folder: Path) -> Dict[str, dict]:
    """Per pair: the sha256 of both signatures, and the verdict on one core and two."""
    gate = Gate(DEFAULT_THRESHOLD)
    out = {}
    for ref_path in sorted(folder.glob("*.ref.jpg")):
        name = ref_path.name[: -len(".ref.jpg")]
        ref = jpeg_signature(ref_path.read_bytes(), BOX)
        data = (folder / f"{name}.jpg").read_bytes()
        sig = jpeg_signature(data, BOX)
        said = []
        for threads in (1, 2, 1, 2):
            got = jpeg_signature(data, BOX, gate.stopper(ref), threads)
            said.append(True if got is None else gate.changed(got, ref))
        out[name] = {"ref": hashlib.sha256(ref.tobytes()).hexdigest(), "sig": hashlib.sha256(sig.tobytes()).hexdigest(),
                     "changed": said}
    return out


def main() -> int:
    print("machine:", platform.machine())
    print("result:", json.dumps(verdicts(Path(sys.argv[1])), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
