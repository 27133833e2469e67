"""Shared pieces of the bench: paths, assets, the bench plugins, hosts, timing, machine facts.

Used by ``bench/protocol/report.py`` (the table, JSON and chart), ``bench/protocol/stages.py`` (the
per-stage worker, run with the plugin's interpreter) and the pytest-benchmark
suites through ``bench/conftest.py``. Imports only the standard library at module
level, so the worker can load it under any interpreter.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import runpy
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
COMMON = BENCH / "common"
PLUGINS = BENCH / "protocol" / "plugins"
RESULTS = BENCH / "results"
MODELS = REPO / "models"
SAMPLES = MODELS / "samples"

DEFAULT_MODEL = "tf2_mobilenet_v2_1.0_224_ptq.tflite"
LABELS = "imagenet_labels.txt"
# The two camera frames every timing uses, by short name.
FRAMES = {"720p": "cat_720p.jpg", "1080p": "cat_1080p.jpg"}
SYMBOL = "labelImage"
PROBE_SYMBOL = "benchProbe"

# A realistic labelImage answer (top-5 of cat_720p.jpg), returned by the constant
# plugins so their reply is as long as a real one.
CONSTANT_RESULT = [
    {"confidence": 0.81640625, "label": "286:Egyptian cat"},
    {"confidence": 0.0859375, "label": "282:tabby, tabby cat"},
    {"confidence": 0.05078125, "label": "283:tiger cat"},
    {"confidence": 0.0078125, "label": "288:lynx, catamount"},
    {"confidence": 0.00390625, "label": "284:Persian cat"},
]

_FETCH: Optional[Dict[str, Any]] = None


def fetch_module() -> Dict[str, Any]:
    global _FETCH
    if _FETCH is None:
        _FETCH = runpy.run_path(str(MODELS / "fetch.py"))
    return _FETCH


def ensure_assets(model: str = DEFAULT_MODEL) -> Dict[str, Path]:
    """Model, labels and sample photos, fetched (sha256-checked) if missing."""
    fetch = fetch_module()
    fetch["fetch"]([model, LABELS], MODELS, quiet=True)
    photos = sorted(fetch["fetch_images"](quiet=True))
    return {"model": MODELS / model, "labels": MODELS / LABELS, "samples": SAMPLES, "photos": photos}


def frame_bytes() -> Dict[str, bytes]:
    return {name: (SAMPLES / fname).read_bytes() for name, fname in FRAMES.items()}


# -- statistics --------------------------------------------------------------------------


def quantile(sorted_xs: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted samples (numpy's default method)."""
    if not sorted_xs:
        return float("nan")
    pos = (len(sorted_xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def summarize(seconds: Sequence[float]) -> Dict[str, float]:
    """p50/p90/p99/mean/min/max in milliseconds, plus n and frames/s at the median."""
    xs = sorted(seconds)
    if not xs:
        return {"n": 0}
    p50 = quantile(xs, 0.5)
    return {
        "n": len(xs),
        "p50": p50 * 1e3,
        "p90": quantile(xs, 0.9) * 1e3,
        "p99": quantile(xs, 0.99) * 1e3,
        "mean": sum(xs) / len(xs) * 1e3,
        "min": xs[0] * 1e3,
        "max": xs[-1] * 1e3,
        "fps": 1.0 / p50 if p50 > 0 else float("inf"),
    }


def time_calls(fn: Callable[[], Any], n: int, warmup: int = 5, min_seconds: float = 0.0,
               max_seconds: float = float("inf"), max_n: int = 100_000,
               warmup_seconds: float = 0.0) -> List[float]:
    """Per-call wall times of ``fn()``: at least ``n`` calls (and ``min_seconds``), stopping
    early after ``max_seconds`` once 20 calls are in; untimed first, ``warmup`` calls and
    at least ``warmup_seconds``."""
    clock = time.perf_counter
    start = clock()
    for _ in range(warmup):
        fn()
    while clock() - start < warmup_seconds:
        fn()
    out: List[float] = []
    start = clock()
    while True:
        t0 = clock()
        fn()
        out.append(clock() - t0)
        elapsed = t0 - start
        if len(out) >= max_n:
            break
        if len(out) >= n and elapsed >= min_seconds:
            break
        if elapsed >= max_seconds and len(out) >= 20:
            break
    return out


# -- machine -----------------------------------------------------------------------------

_ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2",
    "0xd49": "Neoverse-N2", "0xd4b": "Cortex-A78C", "0xd4f": "Neoverse-V2", "0xd80": "Cortex-A520",
    "0xd81": "Cortex-A720", "0xd82": "Cortex-X4",
}


def _read(path: str, limit: int = 1 << 16) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def cpu_model() -> str:
    """A human name for the CPU, from /proc/cpuinfo (x86 'model name', ARM part numbers)
    and the device-tree board model when there is one."""
    info = _read("/proc/cpuinfo")
    names: List[str] = []
    parts: List[str] = []
    for line in info.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key in ("model name", "cpu model", "hardware") and value and value not in names:
            names.append(value)
        elif key == "cpu part" and value:
            part = _ARM_PARTS.get(value.lower(), f"ARM part {value}")
            if part not in parts:
                parts.append(part)
    board = _read("/proc/device-tree/model").strip("\x00\n ")
    text = " + ".join(names + parts) or platform.processor() or "unknown CPU"
    return f"{text} ({board})" if board else text


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _norm_arch(name: str) -> str:
    name = name.strip().lower()
    return {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64"}.get(name, name)


def emulation() -> Dict[str, Any]:
    """Whether this process runs under an emulator (qemu-user), and why we think so.

    Hints, any one is enough: PYAI_EMULATED=1 (set by the arm64 runner); the kernel's
    own architecture (/proc/sys/kernel/arch) differs from platform.machine() (qemu-user
    reports the guest's); our process name is qemu's.
    """
    reasons: List[str] = []
    if os.environ.get("PYAI_EMULATED", "").strip() not in ("", "0", "false", "no"):
        reasons.append("PYAI_EMULATED is set")
    machine = _norm_arch(platform.machine())
    kernel_arch = _norm_arch(_read("/proc/sys/kernel/arch"))
    if kernel_arch and kernel_arch != machine:
        reasons.append(f"kernel arch {kernel_arch} != platform.machine() {machine}")
    comm = _read("/proc/self/comm").strip()
    if comm.startswith("qemu"):
        reasons.append(f"process name is {comm}")
    return {"emulated": bool(reasons), "reasons": reasons, "host_arch": kernel_arch or None}


def _version(dist: str) -> Optional[str]:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def machine_info() -> Dict[str, Any]:
    """Facts about this interpreter and machine (call it in the process you measure)."""
    info: Dict[str, Any] = {
        "arch": _norm_arch(platform.machine()),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        # Basename only: results files are committed, machine paths are not.
        "executable": os.path.basename(sys.executable),
    }
    for key, dist in (("numpy", "numpy"), ("litert", "ai-edge-litert"), ("tflite_runtime", "tflite-runtime"),
                      ("simplejpeg", "simplejpeg"), ("pillow", "pillow"), ("pynng", "pynng"),
                      ("native_preproc", "native-preproc")):
        v = _version(dist)
        if v is not None:
            info[key] = v
    try:
        from native_preproc import resize_into

        if callable(resize_into):
            info.setdefault("native_preproc", "(no version metadata)")
    except ImportError:
        info.pop("native_preproc", None)
    info["emulation"] = emulation()
    return info


def results_stem(info: Dict[str, Any]) -> str:
    """One results file per architecture; an emulated run never overwrites a real board's."""
    return info["arch"] + ("-emulated" if info.get("emulation", {}).get("emulated") else "")


def report_ways(res: Dict[str, Any], title: str, line: Callable[[str, Dict[str, Any]], str],
                out: Optional[Path]) -> None:
    """Print an in-process A/B's ``res["ways"]`` under the machine and ``title``, and
    save ``res`` to ``out`` when given."""
    m = res["machine"]
    print(f"{m['cpu']} x{m['cores']}, {title}")
    for name, way in res["ways"].items():
        print("  " + line(name, way))
    if out:
        out.write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {out}")


def save_results(res: Dict[str, Any], out_dir: Path, stem: str,
                 write_chart: Callable[[Dict[str, Any], Path], Optional[str]], say: Callable[[str], None]) -> Path:
    """``<stem>.json`` (written whole or not at all) and ``<stem>.png`` in ``out_dir``
    when matplotlib is installed; ``write_chart`` (which may import pyplot: the
    backend is set here) returns a message when it did not write the chart."""
    out_dir.mkdir(parents=True, exist_ok=True)
    jpath = out_dir / f"{stem}.json"
    tmp_path = jpath.with_suffix(".json.tmp")
    tmp_path.write_text(json.dumps(res, indent=1))
    tmp_path.replace(jpath)
    say(f"wrote {jpath}")
    try:
        import matplotlib

        # Files only, no display: before any chart writer imports pyplot.
        matplotlib.use("Agg")
    except ImportError:
        say("matplotlib is not installed: no PNG chart (pip install matplotlib)")
        return jpath
    png = out_dir / f"{stem}.png"
    say(write_chart(res, png) or f"wrote {png}")
    return jpath


# -- the protocol harness ------------------------------------------------------------------


def exec_request(data: bytes, symbol_args: Sequence[Any] = ()) -> bytes:
    """The exact bytes the Go host sends for ``labelImage(self)`` on a BINARY stream."""
    from tests.hostsim import go_json

    meta = go_json({"ruleId": "rule1", "opId": "op1", "instanceId": 0, "funcId": 0}).decode()
    return go_json({"func": "Exec", "arg": [data, *symbol_args, meta]})


def ipc_in_use(url: str) -> bool:
    """True when something listens on an ``ipc://`` address (a live socket file)."""
    from pyai.plugin.runtime import listening

    return listening(url)


def wait_ipc_free(urls: Sequence[str], timeout_s: float = 120.0) -> None:
    """Only one host may own a plugin's addresses; wait for another (a test run?) to finish."""
    deadline = time.monotonic() + timeout_s
    told = False
    while True:
        busy = [u for u in urls if ipc_in_use(u)]
        if not busy:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{', '.join(busy)} still in use after {timeout_s:.0f} s: "
                               "another host (a test run, another bench?) owns it")
        if not told:
            print(f"  waiting for {', '.join(busy)} (another host is using it) ...", flush=True)
            told = True
        time.sleep(0.5)


@dataclass
class PluginSpec:
    """One bench plugin: a folder with ``<name>.json`` and its executable."""

    key: str
    name: str
    folder: Path
    title: str
    needs_sdk: bool = False
    symbols: Sequence[str] = (SYMBOL,)
    python: Optional[List[str]] = None  # default: the plugin environment's interpreter
    extra_env: Dict[str, str] = field(default_factory=dict)


def bench_plugin_specs(pyai_dir: Path) -> Dict[str, PluginSpec]:
    return {
        "baseline": PluginSpec("baseline", "bench_baseline", PLUGINS / "baseline",
                               "baseline: tutorial plugin (SDK, PIL, interpreter per call)", needs_sdk=True),
        "sdk_const": PluginSpec("sdk_const", "bench_sdkconst", PLUGINS / "sdk_const",
                                "SDK transport, constant reply", needs_sdk=True),
        "transport": PluginSpec("transport", "bench_transport", PLUGINS / "transport",
                                "pyai transport, constant reply"),
        "floor": PluginSpec("floor", "bench_floor", PLUGINS / "floor",
                            "floor plugin: transport + scaled decode + invoke"),
        "pyai": PluginSpec("pyai", "pyai", pyai_dir, "pyai (packaged, install.sh)"),
        "probe": PluginSpec("probe", "bench_probe", PLUGINS / "probe",
                            "pyai + a probe symbol (soak)", symbols=(SYMBOL, PROBE_SYMBOL)),
    }


@dataclass
class PluginEnv:
    """Where the packaged plugin is installed and how its processes are started."""

    pyai_dir: Path
    python: List[str]
    workdir: Path
    install_log: str = ""
    install_seconds: float = 0.0
    how: str = ""
    sdk_dir: Optional[Path] = None
    sdk_version: Optional[str] = None
    emulated_hint: bool = False
    specs: Dict[str, PluginSpec] = field(default_factory=dict)

    def plugin_env(self, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        """Environment for bench plugins: where pyai, the SDK, model and frames are."""
        env = dict(os.environ)
        paths = [str(self.pyai_dir)]
        if self.sdk_dir is not None:
            paths.append(str(self.sdk_dir))
        paths.append(str(COMMON))  # benchlib.CONSTANT_RESULT
        env["PYAI_BENCH_PATHS"] = os.pathsep.join(paths)
        env["PYAI_BENCH_PYAI_DIR"] = str(self.pyai_dir)
        env["PYAI_BENCH_MODEL"] = str(MODELS / DEFAULT_MODEL)
        # pyai runs the shipped default model whatever the zip's pyai_config.json
        # names, so that it and the floor run the same model (a caller's extra
        # PYAI_MODEL, e.g. the accuracy bench's, still wins).
        env["PYAI_MODEL"] = str(MODELS / DEFAULT_MODEL)
        env["PYAI_BENCH_LABELS"] = str(MODELS / LABELS)
        env["PYAI_BENCH_FRAMES"] = os.pathsep.join(str(SAMPLES / f) for f in FRAMES.values())
        if extra:
            env.update(extra)
        return env


def vendor_sdk(dest: Path) -> Optional[Path]:
    """Copy the pure-Python ``ekuiper`` SDK package into ``dest`` so SDK-based bench plugins
    can import it from any interpreter (it pins pynng==0.8.1, so we do not pip-install it
    next to pyai's requirements)."""
    spec = importlib.util.find_spec("ekuiper")
    if spec is None or not spec.submodule_search_locations:
        return None
    src = Path(list(spec.submodule_search_locations)[0])
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dest / "ekuiper", ignore=shutil.ignore_patterns("__pycache__", "test_*"),
                    dirs_exist_ok=True)
    return dest


def prepare_env(workdir: Path, python: Optional[Sequence[str]] = None, zip_path: Optional[Path] = None,
                log: Callable[[str], None] = print) -> PluginEnv:
    """Build the plugin zip and install it as eKuiper does (install.sh into a fresh venv),
    or, with ``python`` (or PYAI_PLUGIN_PYTHON), only unpack it and use that interpreter."""
    from tests import hostsim
    from pyai.plugin import package

    workdir.mkdir(parents=True, exist_ok=True)
    if zip_path is None:
        zip_path = package.build(workdir / "dist" / "pyai.zip")
    custom = list(python) if python else None
    if custom is None and os.environ.get("PYAI_PLUGIN_PYTHON"):
        custom = shlex.split(os.environ["PYAI_PLUGIN_PYTHON"])
    t0 = time.perf_counter()
    if custom:
        pyai_dir = hostsim.unpack_plugin(zip_path, workdir / "ekuiper")
        env = PluginEnv(pyai_dir, custom, workdir, how=f"unpacked {zip_path.name}, run with {' '.join(os.path.basename(c) for c in custom)}")
    else:
        pyai_dir, py, out = hostsim.install_zip(zip_path, str(workdir / "ekuiper"))
        env = PluginEnv(pyai_dir, [str(py)], workdir, install_log=out,
                        how=f"{zip_path.name} installed with install.sh into a fresh venv")
    env.sdk_dir = vendor_sdk(workdir / "sdk")
    if env.sdk_dir is not None and not custom:
        # The SDK-based plugins (tutorial baseline, SDK constant) need pynng, which
        # pyai itself does not: it speaks the protocol over the socket directly.
        out = subprocess.run([str(py), "-m", "pip", "install", "-q", SDK_PYNNG], capture_output=True, text=True)
        if out.returncode != 0:
            log(f"  could not install {SDK_PYNNG} for the SDK plugins: {out.stderr.strip()[-300:]}")
    env.install_seconds = time.perf_counter() - t0
    env.sdk_version = _version("ekuiper")
    env.specs = bench_plugin_specs(pyai_dir)
    return env


SDK_PYNNG = "pynng==0.8.1"  # what the ekuiper SDK pins
TUTORIAL_RUNTIME_REQS = ["tflite-runtime", "numpy<2", "pillow", SDK_PYNNG]


def add_tutorial_runtime(env: PluginEnv, log: Callable[[str], None] = print) -> bool:
    """A venv with the tutorial's own runtime (tflite_runtime + NumPy 1.x, which is what
    ``pip install pynng ekuiper tflite_runtime`` gives), and a second baseline spec that
    runs the same baseline plugin with it. Returns False (and says why) when it cannot."""
    if len(env.python) != 1:
        log("  tutorial runtime: skipped (the plugin interpreter is a wrapper command, e.g. emulated)")
        return False
    venv_dir = env.workdir / "tutorial-venv"
    py = venv_dir / "bin" / "python"
    try:
        if not py.exists():
            subprocess.run(env.python + ["-m", "venv", str(venv_dir)], check=True, capture_output=True, text=True)
            subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", *TUTORIAL_RUNTIME_REQS],
                           check=True, capture_output=True, text=True, timeout=600)
            subprocess.run([str(py), "-c", "import tflite_runtime.interpreter, PIL, numpy"], check=True,
                           capture_output=True, text=True)
    except Exception as exc:  # noqa: BLE001 - optional row
        detail = getattr(exc, "stderr", "") or str(exc)
        log(f"  tutorial runtime: skipped ({' '.join(TUTORIAL_RUNTIME_REQS)} not installable here: "
            f"{detail.strip().splitlines()[-1] if detail.strip() else exc})")
        return False
    base = env.specs["baseline"]
    env.specs["baseline_tflrt"] = PluginSpec(
        "baseline_tflrt", base.name, base.folder,
        "baseline with the tutorial's own runtime (tflite_runtime, NumPy 1.x)", needs_sdk=True,
        python=[str(py)], extra_env={"PYAI_BENCH_RUNTIME": "tflite_runtime"})
    return True


def host_timeout_s(emulated: bool) -> float:
    default = "60" if emulated else "5"
    return float(os.environ.get("PYAI_HOST_TIMEOUT", default))


def peer_pid(pipe: Any) -> Optional[int]:
    """The process id at the other end of an nng IPC pipe (SO_PEERCRED), or None."""
    try:
        from pynng._nng import ffi, lib

        value = ffi.new("uint64_t *")
        if lib.nng_pipe_get_uint64(pipe.pipe, b"ipc:peer-pid", value) == 0:
            return int(value[0])
    except Exception:  # noqa: BLE001 - older pynng, other platforms
        pass
    return None


def _is_descendant(pid: int, root: int) -> bool:
    for _ in range(16):
        if pid == root:
            return True
        stat = _read(f"/proc/{pid}/stat")
        try:
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (IndexError, ValueError):
            return False
        if pid <= 1:
            return False
    return False


def cmdline(pid: int) -> str:
    return _read(f"/proc/{pid}/cmdline").replace("\x00", " ").strip()[:200] or "?"


class PeerWatch:
    """Which processes are connected to our host's sockets.

    The IPC addresses are global to the machine: a plugin process of another host
    (a test run, another bench) that dials ``/tmp/func_labelImage.ipc`` while we
    listen there joins our REP socket and answers some of our requests. Timings and
    answers from such a session are not ours, so the bench discards them.
    """

    def __init__(self, host: Any):
        self.root = host.proc.pid
        self.foreign: Dict[int, int] = {}
        self.unknown = False
        self.socks = [host.control.sock] + [ch.sock for ch in host.functions.values()]
        for sock in self.socks:
            sock.add_post_pipe_connect_cb(self._check)
        self.scan()

    def _check(self, pipe: Any) -> None:
        pid = peer_pid(pipe)
        if pid is None:
            self.unknown = True
        elif pid != self.root and not _is_descendant(pid, self.root):
            self.foreign[pid] = self.foreign.get(pid, 0) + 1

    def scan(self) -> Dict[int, str]:
        """Foreign peers seen so far (pid -> command line); an empty dict means clean."""
        for sock in self.socks:
            pipes = list(sock.pipes)
            for p in pipes:
                self._check(p)
            if self.unknown and len(pipes) > 1:  # no peer pids here: count connections
                self.foreign.setdefault(-1, len(pipes))
        return {pid: (cmdline(pid) if pid > 0 else "unknown process") for pid in self.foreign}


@dataclass
class Running:
    host: Any
    start_seconds: float  # process start to every symbol's handshake
    log_path: Path
    t0: float = 0.0  # perf_counter() just before the process was started
    watch: Optional[PeerWatch] = None

    @property
    def pid(self) -> int:
        return self.host.proc.pid

    def intruders(self) -> Dict[int, str]:
        return self.watch.scan() if self.watch is not None else {}


@contextlib.contextmanager
def running_plugin(env: PluginEnv, spec: PluginSpec, timeout_s: float = 5.0,
                   extra_env: Optional[Dict[str, str]] = None, attempts: int = 5) -> Iterator[Running]:
    """Start one bench plugin with the host emulator and start its symbols; close it after.

    The IPC addresses are shared with any other host on the machine (a test run): if one
    takes them between our check and our listen, wait for it and start again.
    """
    import pynng

    from tests.hostsim import CONTROL_URL, FUNCTION_URL, PluginHost

    urls = [CONTROL_URL.format(spec.name)] + [FUNCTION_URL.format(s) for s in spec.symbols]
    log_path = env.workdir / "logs" / f"{spec.key}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(attempts):
        wait_ipc_free(urls)
        host = PluginHost(spec.folder, spec.python or env.python, name=spec.name,
                          env=env.plugin_env({**spec.extra_env, **(extra_env or {})}),
                          recv_timeout_s=timeout_s, init_timeout_s=max(60.0, timeout_s), log_path=log_path)
        try:
            t0 = time.perf_counter()
            host.start()
            for s in spec.symbols:
                host.start_symbol(s)
            break
        except pynng.AddressInUse:
            host.close()
            if attempt == attempts - 1:
                raise
            print(f"  {spec.key}: an IPC address was taken by another host; retrying", flush=True)
            time.sleep(1.0)
        except BaseException:
            tail = _read(str(log_path))[-3000:]
            if tail:
                print(f"--- {spec.key} plugin log (tail) ---\n{tail}", file=sys.stderr)
            host.close()
            raise
    try:
        yield Running(host, time.perf_counter() - t0, log_path, t0, PeerWatch(host))
    except BaseException:
        tail = _read(str(log_path))[-3000:]
        if tail:
            print(f"--- {spec.key} plugin log (tail) ---\n{tail}", file=sys.stderr)
        raise
    finally:
        host.close()


def plugin_session(env: PluginEnv, spec: PluginSpec, timeout_s: float, body: Callable[[Running], Any],
                   attempts: int = 3, log: Callable[[str], None] = print) -> Any:
    """``body(run)`` in a fresh plugin session; a session another process joined (see
    PeerWatch) is thrown away and run again."""
    from tests.hostsim import HostError

    for attempt in range(attempts):
        last = attempt == attempts - 1
        try:
            with running_plugin(env, spec, timeout_s) as run:
                data = body(run)
                intruders = run.intruders()
        except HostError as exc:
            # A reply timeout or a dead socket: a noisy neighbour, or a real failure that
            # will repeat (then the last attempt raises it, with the plugin log above).
            if last:
                raise
            log(f"  {spec.key}: session failed ({exc}); retrying")
            time.sleep(3.0)
            continue
        if not intruders:
            return data
        who = "; ".join(f"pid {pid}: {cmd}" for pid, cmd in intruders.items())
        log(f"  {spec.key}: session discarded, another process was connected to this host's sockets "
            f"and may have answered ({who}); {'giving up' if last else 'retrying'}")
        time.sleep(3.0)
    raise RuntimeError(f"{spec.key}: other processes keep joining this host's IPC sockets; "
                       "stop the other host (a test run?) and run the bench again")


def call(host: Any, payload: bytes, symbol: str = SYMBOL) -> tuple:
    """One request/reply on an already started symbol: (parsed reply, seconds).

    Times only the host's send and the reply's arrival, as eKuiper sees it; the
    request is encoded once beforehand.
    """
    ch = host.functions[symbol]
    t0 = time.perf_counter()
    raw = ch.request(payload)
    dt = time.perf_counter() - t0
    msg = json.loads(raw)
    if not msg.get("state"):
        raise RuntimeError(f"{symbol} failed: {str(msg.get('result'))[:500]}")
    return msg["result"], dt


def timed_plugin_calls(host: Any, payload: bytes, n: int, warmup: int = 10) -> List[float]:
    for _ in range(warmup):
        call(host, payload)
    return [call(host, payload)[1] for _ in range(n)]


def rss_bytes(pid: int) -> Optional[int]:
    """Resident set size of a process: psutil when installed, else /proc/<pid>/status."""
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - process gone
        return None
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def process_exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""
