#!/usr/bin/env python3
"""Peer comparison: times SMOF, ONNX Runtime, ncnn, MNN and tract on the same ONNX models,
single thread (or `--threads N`), batch 1, f32, in one run on one machine, and writes the
table into docs/benchmarks.md between `<!-- peers:begin -->` and `<!-- peers:end -->` (with
`--threads N` above 1, between `<!-- peers-N-threads:begin -->` and its end marker).

    benches/compare/run.sh [--loops N] [--warmup N] [--rounds N] [--threads N]
                           [--runtimes LIST] [MODEL.onnx ...]

tract has no threads within an operator, so with `--threads N` it still runs on one.

Every runtime runs in its own process (`smof-bench`, `tract-bench`, or this script with
`--worker`), on the same synthetic input (the generator of `smof-bench`); each dumps its
output, which is checked against ONNX Runtime's so that a broken conversion cannot pass for
a fast one. Per model the runtimes run back-to-back, in rounds with the order rotated each
round, so machine noise hits all of them alike; a runtime's figure is the median, over the
rounds, of the median of its timed runs.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
DEFAULT_MODELS = [
    os.path.join(ROOT, "..", "shared", "models", "resnet18.onnx"),
    os.path.join(ROOT, "..", "shared", "models", "mobilenet_v2.onnx"),
    os.path.join(ROOT, "..", "shared", "models", "squeezenet1_1.onnx"),
    os.path.join(ROOT, "models", "mobilenet_v2_imagenet_backbone.onnx"),
]
# The detector and efficient backbones of models/zoo, when they have been exported there
# (models/zoo/README.md): added to the default list if present.
ZOO_MODELS = [
    os.path.join(ROOT, "models", "zoo", "out", n + ".onnx")
    for n in ("mobilenet_v3_small", "efficientnet_b0", "yolov8n", "convnext_tiny")
]
RUNTIMES = ["smof", "ort", "ncnn", "mnn", "tract"]
TITLES = {
    "smof": "smof",
    "ort": "ONNX Runtime",
    "ncnn": "ncnn",
    "mnn": "MNN",
    "tract": "tract",
}


def markers(threads):
    """The markers around the table for `threads` threads in docs/benchmarks.md."""
    if threads == 1:
        return "<!-- peers:begin -->", "<!-- peers:end -->"
    return f"<!-- peers-{threads}-threads:begin -->", f"<!-- peers-{threads}-threads:end -->"

# Outputs must agree with ONNX Runtime's to this fraction of max |ORT output|: f32 runtimes
# that sum in different orders (Winograd, GEMM blocking) differ by ~1e-5..1e-3 of it; a
# wrong conversion (layout, missing layer) is off by O(1).
OUTPUT_TOL = 1e-2


class Fail(Exception):
    """A runtime could not convert or run a model; the message goes into the table."""


# ---------------------------------------------------------------------------------------
# Input and statistics.
# ---------------------------------------------------------------------------------------


def synthetic_input(shape):
    """The input `smof-bench` builds for input 0: xorshift32 from seed 1, mapped to [-1, 1)."""
    import numpy as np

    n = 1
    for d in shape:
        n *= d
    s = (1 * 2654435761) & 0xFFFFFFFF
    vals = np.empty(n, dtype=np.uint32)
    for i in range(n):
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        vals[i] = s
    f = vals.astype(np.float32) / np.float32(4294967296.0)
    return (f * np.float32(2.0) - np.float32(1.0)).astype(np.float32).reshape(shape)


def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


# ---------------------------------------------------------------------------------------
# Workers: one process per runtime and model, printing one JSON line.
# ---------------------------------------------------------------------------------------


def time_loop(run, warmup, loops):
    for _ in range(warmup):
        run()
    ms = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(loops):
        t = time.perf_counter()
        run()
        ms.append((time.perf_counter() - t) * 1e3)
    # CPU time of every thread of the process over the timed runs only: imports and model
    # loading (which may use threads) do not count.
    loop_cpu = (time.process_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
    return {"min_ms": min(ms), "median_ms": median(ms), "loop_cpu_per_wall": loop_cpu}


def worker_ort(model, x, warmup, loops, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    out = sess.run(None, feed)[0]
    r = time_loop(lambda: sess.run(None, feed), warmup, loops)
    return r, out


def worker_ncnn(model, x, warmup, loops, threads):
    import ncnn

    param, binf = model
    net = ncnn.Net()
    net.opt.num_threads = threads
    # f32 throughout; the optimisations stay at ncnn's defaults (Winograd, sgemm, packing).
    net.opt.use_fp16_storage = False
    net.opt.use_fp16_packed = False
    net.opt.use_fp16_arithmetic = False
    net.opt.use_bf16_storage = False
    net.opt.use_vulkan_compute = False
    if net.load_param(param) != 0 or net.load_model(binf) != 0:
        raise Fail("ncnn cannot load the pnnx output")
    in_name = net.input_names()[0]
    out_names = net.output_names()
    mat = ncnn.Mat(x[0]).clone()

    def run():
        # Every output: an ncnn extractor runs only the layers the extracted blobs need, so
        # extracting output 0 alone would skip the other heads of a multi-output model
        # (the other runtimes compute them all).
        with net.create_extractor() as ex:
            ex.input(in_name, mat)
            outs = []
            for name in out_names:
                ret, out = ex.extract(name)
                if ret != 0:
                    raise Fail(f"ncnn extract of {name} failed ({ret})")
                outs.append(out)
            return outs[0]

    import numpy as np

    out = np.array(run()).copy()
    r = time_loop(run, warmup, loops)
    return r, out


def worker_mnn(model, x, warmup, loops, threads):
    import MNN
    import numpy as np

    model, out_name = model
    interp = MNN.Interpreter(model)
    sess = interp.createSession({"numThread": threads, "backend": "CPU", "precision": "normal"})
    inp = interp.getSessionInput(sess)
    if tuple(inp.getShape()) != tuple(x.shape):
        interp.resizeTensor(inp, tuple(x.shape))
        interp.resizeSession(sess)
    host = MNN.Tensor(tuple(x.shape), MNN.Halide_Type_Float, x, MNN.Tensor_DimensionType_Caffe)
    inp.copyFrom(host)

    def run():
        if interp.runSession(sess) != 0:
            raise Fail("MNN runSession failed")

    run()
    dev = interp.getSessionOutput(sess, out_name)
    shape = tuple(dev.getShape())
    out_host = MNN.Tensor(
        shape, MNN.Halide_Type_Float, np.zeros(shape, np.float32), MNN.Tensor_DimensionType_Caffe
    )
    dev.copyToHostTensor(out_host)
    out = np.array(out_host.getData(), dtype=np.float32).copy()
    r = time_loop(run, warmup, loops)
    return r, out


def worker_main(a):
    import numpy as np

    x = np.load(a.input)
    fn = {"ort": worker_ort, "ncnn": worker_ncnn, "mnn": worker_mnn}[a.worker]
    model = a.model[0] if len(a.model) == 1 else tuple(a.model)
    try:
        r, out = fn(model, x, a.warmup, a.loops, a.threads)
    except Fail as e:
        print(f"compare: {e}", file=sys.stderr)
        return 1
    np.asarray(out, dtype="<f4").ravel().tofile(a.dump_output)
    print(json.dumps(r))
    return 0


# ---------------------------------------------------------------------------------------
# Driver.
# ---------------------------------------------------------------------------------------


def sh(cmd, cwd=None, what=None, usage=None, threads=1):
    """Runs `cmd`; on failure raises Fail with the last lines of its output. With `usage` (a
    dict), stores the child's CPU seconds and wall seconds in it."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # As many OpenMP threads as the run's threads: ncnn's wheel otherwise keeps a second
    # OpenMP thread busy on small models (CPU time 1.29x wall time on MobileNetV3-Small) even
    # with `num_threads = 1`.
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if usage is not None:
        usage["cpu"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        usage["wall"] = wall
    if p.returncode != 0:
        tail = (p.stderr.strip() or p.stdout.strip()).splitlines()[-3:]
        raise Fail(f"{what or cmd[0]} failed: " + " / ".join(tail))
    return p.stdout


def last_json(stdout):
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise Fail("no JSON result in the output")


def declared_shape(path):
    """The fixed input shape the ONNX model declares (1x3x224x224 where it is symbolic)."""
    import onnxruntime as ort

    dims = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).get_inputs()[0].shape
    if len(dims) != 4 or not all(isinstance(d, int) and d > 0 for d in dims):
        return (1, 3, 224, 224)
    return tuple(dims)


class Model:
    def __init__(self, path, work):
        import numpy as np

        self.path = os.path.abspath(path)
        self.name = os.path.splitext(os.path.basename(path))[0]
        self.dir = os.path.join(work, self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.prepared = {}  # runtime -> converted model path(s), or Fail
        self.shape = declared_shape(self.path)
        self.shape_arg = ",".join(str(d) for d in self.shape)
        self.label = self.name if self.shape == (1, 3, 224, 224) else \
            f"{self.name} ({'x'.join(str(d) for d in self.shape)})"
        # The input smof-bench and tract-bench synthesise, saved for the Python workers.
        self.xfile = os.path.join(self.dir, "input.npy")
        np.save(self.xfile, synthetic_input(self.shape))


def prepare(rt, m, tools):
    """Converts `m` for runtime `rt` once; returns what its worker loads."""
    if rt in m.prepared:
        if isinstance(m.prepared[rt], Fail):
            raise m.prepared[rt]
        return m.prepared[rt]
    try:
        if rt == "smof":
            out = os.path.join(m.dir, m.name + ".smof")
            sh([tools["smof"], "convert", m.path, "-o", out, "--input-shape", m.shape_arg],
               what="smof convert")
        elif rt == "ncnn":
            # pnnx writes its outputs next to the model it reads: give it a copy in the work dir.
            src = os.path.join(m.dir, m.name + ".onnx")
            shutil.copyfile(m.path, src)
            sh([tools["pnnx"], src, f"inputshape=[{m.shape_arg}]", "fp16=0"], cwd=m.dir,
               what="pnnx")
            out = (os.path.join(m.dir, m.name + ".ncnn.param"),
                   os.path.join(m.dir, m.name + ".ncnn.bin"))
        elif rt == "mnn":
            out = os.path.join(m.dir, m.name + ".mnn")
            # The converter itself (`_tools.mnnconvert`), not the `mnnconvert` script: the
            # script sends usage logs and pip-installs a logging SDK when that is missing.
            sh([sys.executable, "-c",
                "import sys, _tools; _tools.mnnconvert(['mnnconvert'] + sys.argv[1:])",
                "-f", "ONNX", "--modelFile", m.path, "--MNNModel", out, "--bizCode", "smof"],
               what="MNN convert")
            if not os.path.exists(out):
                raise Fail("MNN convert wrote no model")
            # The worker reads output 0 by name: a session's default output is another one
            # on multi-output models.
            import onnx

            out = (out, onnx.load(m.path, load_external_data=False).graph.output[0].name)
        else:
            out = m.path
    except Fail as e:
        m.prepared[rt] = e
        raise
    m.prepared[rt] = out
    return out


def run_once(rt, m, a, tools):
    """One round of runtime `rt` on model `m`: returns (result dict, output dump path)."""
    import numpy as np

    target = prepare(rt, m, tools)
    usage = {}
    dump = os.path.join(m.dir, f"out_{rt}.f32")
    common = ["--warmup", str(a.warmup), "--loops", str(a.loops), "--dump-output", dump]
    if rt == "smof":
        r = last_json(sh([tools["smof-bench"], target, "--json", "--threads", str(a.threads)]
                         + common, what="smof-bench", usage=usage))
    elif rt == "tract":
        r = last_json(sh([tools["tract-bench"], target, "--shape", m.shape_arg] + common,
                         what="tract-bench", usage=usage))
    else:
        models = list(target) if isinstance(target, tuple) else [target]
        r = last_json(sh([sys.executable, os.path.abspath(__file__), "--worker", rt,
                          "--input", m.xfile, "--threads", str(a.threads)] + common + models,
                         what=TITLES[rt], usage=usage, threads=a.threads))
    r["cpu_per_wall"] = r.get("loop_cpu_per_wall", usage["cpu"] / usage["wall"])
    return r, np.fromfile(dump, dtype="<f4")


def versions(runtimes):
    import importlib.metadata as md

    v = {}
    try:
        git = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
    except OSError:
        git = ""
    cargo = open(os.path.join(ROOT, "Cargo.toml")).read()
    mv = re.search(r'\[workspace\.package\][^\[]*?version\s*=\s*"([^"]+)"', cargo, re.S)
    if git:
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        git += " with uncommitted changes" if dirty else ""
    v["smof"] = (mv.group(1) if mv else "?") + (f" (git {git})" if git else "")

    def dist(name):
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    if "ort" in runtimes:
        v["ort"] = dist("onnxruntime") or "?"
    if "ncnn" in runtimes:
        v["ncnn"] = f"{dist('ncnn')} (pnnx {dist('pnnx')})"
    if "mnn" in runtimes:
        v["mnn"] = dist("MNN") or dist("mnn") or "?"
    if "tract" in runtimes:
        lock = os.path.join(HERE, "tract-bench", "Cargo.lock")
        tv = "?"
        if os.path.exists(lock):
            mt = re.search(r'name = "tract-onnx"\nversion = "([^"]+)"', open(lock).read())
            tv = mt.group(1) if mt else "?"
        v["tract"] = f"{tv} (tract-onnx)"
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout
    v["rustc"] = rustc.split("(")[0].replace("rustc", "").strip()
    v["python"] = platform.python_version()
    return v


def machine():
    cpu = "?"
    flags = set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and cpu == "?":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        cpu = platform.processor() or platform.machine()
    isa = [f for f in ["avx2", "fma", "avx512f", "asimd"] if f in flags]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "isa": " ".join(isa) or platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
    }


def build(a, runtimes):
    tools = {}
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    target = os.path.join(ROOT, target) if not os.path.isabs(target) else target
    if "smof" in runtimes:
        if not a.skip_build:
            print("building smof, smof-bench ...", file=sys.stderr)
            sh(["cargo", "build", "--release", "-p", "smof", "-p", "smof-converter", "--bins"],
               cwd=ROOT, what="cargo build (smof)")
        tools["smof"] = os.path.join(target, "release", "smof")
        tools["smof-bench"] = os.path.join(target, "release", "smof-bench")
    if "tract" in runtimes:
        # Its own target dir: its profile differs from the workspace's, and building it
        # must not wait for (or hold) the workspace's lock.
        manifest = os.path.join(HERE, "tract-bench", "Cargo.toml")
        tract_target = os.path.join(HERE, "tract-bench", "target")
        if not a.skip_build:
            print("building tract-bench (full release optimisation) ...", file=sys.stderr)
            sh(["cargo", "build", "--release", "--manifest-path", manifest,
                "--target-dir", tract_target], what="cargo build (tract-bench)")
        tools["tract-bench"] = os.path.join(tract_target, "release", "tract-bench")
    if "ncnn" in runtimes:
        tools["pnnx"] = shutil.which("pnnx") or "pnnx"
    for name, path in tools.items():
        if os.path.sep in path and not os.path.exists(path):
            raise Fail(f"{path} is missing ({name}); run without --skip-build")
    return tools


def fmt_ms(v):
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def render(a, results, errors, diffs, info, runtimes, models, started, load):
    ver = info["versions"]
    mach = info["machine"]
    peers = [r for r in runtimes if r != "smof"]
    begin, end = markers(a.threads)
    if a.threads == 1:
        threads = "Single thread"
    else:
        threads = f"{a.threads} threads"
        if "tract" in runtimes:
            threads += " (tract: one, it has no threads within an operator)"
    lines = [
        begin,
        "",
        f"Written by `{' '.join(['benches/compare/run.sh'] + info['argv'])}` on "
        f"{started:%Y-%m-%d %H:%M} UTC.",
        "",
        f"- Machine: {mach['cpu']}, {mach['cores']} cores ({mach['isa']}), {mach['os']}; "
        f"load average {load[0]:.2f} before the run, {load[1]:.2f} after.",
        f"- smof kernel table: `{info.get('kernels', '?')}`.",
        "- Versions: " + ", ".join(
            [f"smof {ver['smof']}"] + [f"{TITLES[r]} {ver[r]}" for r in peers]
            + [f"rustc {ver['rustc']}", f"Python {ver['python']}"]) + ".",
        f"- {threads}, batch 1, f32, input 1x3x224x224 unless the model name says "
        "otherwise (the shape the model declares); per runtime and model "
        f"{a.rounds} round(s) of {a.warmup} warm-up and {a.loops} timed runs, runtimes "
        "back-to-back with the order rotated each round. Figures: median over the rounds "
        "of each round's median, in ms; ratio = smof / peer (below 1: smof is faster).",
        "",
    ]
    head = ["model"] + [TITLES[r] for r in runtimes]
    if "smof" in runtimes:
        head += [f"smof / {TITLES[r]}" for r in peers]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    notes = []
    for m in models:
        row = [m.label]
        for r in runtimes:
            if (m.name, r) in results:
                row.append(fmt_ms(results[(m.name, r)]))
            else:
                notes.append(f"{m.name}, {TITLES[r]}: {errors.get((m.name, r), 'not run')}")
                row.append(f"n/a [{len(notes)}]")
        if "smof" in runtimes:
            ours = results.get((m.name, "smof"))
            for r in peers:
                peer = results.get((m.name, r))
                row.append(f"{ours / peer:.2f}" if ours and peer else "")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    checked = [f"{m.name}: " + ", ".join(f"{TITLES[r]} {d:.1e}" for r, d in diffs[m.name].items())
               for m in models if diffs.get(m.name)]
    if checked:
        lines.append("Output check, max |output - ONNX Runtime's| / max |ONNX Runtime's| "
                     f"(must be below {OUTPUT_TOL:g}): " + "; ".join(checked) + ".")
        lines.append("")
    if info["cpu_ratio"]:
        what = "Single-thread check" if a.threads == 1 else "Thread check"
        lines.append(f"{what}, largest CPU time / wall time of a runtime over its timed runs "
                     "(the Python-hosted runtimes), or of its whole process (smof-bench, "
                     f"tract-bench); above {a.threads} would mean "
                     f"{'a second' if a.threads == 1 else 'an extra'} busy thread: "
                     + ", ".join(f"{TITLES[r]} {v:.2f}" for r, v in info["cpu_ratio"].items())
                     + ".")
        lines.append("")
    for i, n in enumerate(notes, 1):
        lines.append(f"[{i}] {n}")
    if notes:
        lines.append("")
    lines.append(end)
    return "\n".join(lines)


def write_doc(path, block, threads):
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    begin, end = markers(threads)
    title = "Peer comparison" if threads == 1 else f"Peer comparison, {threads} threads"
    if begin in text and end in text:
        pre, rest = text.split(begin, 1)
        _, post = rest.split(end, 1)
        text = pre + block + post
    else:
        text = (text.rstrip("\n") + f"\n\n## {title}\n\n"
                "`benches/compare/run.sh` writes this section (see `benches/compare/README.md`).\n\n"
                + block + "\n")
    with open(path, "w") as f:
        f.write(text)


def driver_main(a, argv):
    import numpy as np

    runtimes = [r.strip() for r in a.runtimes.split(",") if r.strip()]
    for r in runtimes:
        if r not in RUNTIMES:
            sys.exit(f"compare: unknown runtime '{r}' (known: {', '.join(RUNTIMES)})")
    model_paths = a.models or DEFAULT_MODELS + [p for p in ZOO_MODELS if os.path.isfile(p)]
    for p in model_paths:
        if not os.path.isfile(p):
            sys.exit(f"compare: no model at {p}")
    if a.rounds < 1 or a.loops < 1 or a.warmup < 0 or a.threads < 1:
        sys.exit("compare: --rounds, --loops and --threads must be at least 1, --warmup at "
                 "least 0")
    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()[0]
    work = os.path.abspath(a.work)
    os.makedirs(work, exist_ok=True)
    try:
        tools = build(a, runtimes)
    except Fail as e:
        sys.exit(f"compare: {e}")
    models = [Model(p, work) for p in model_paths]

    rounds = {}  # (model, runtime) -> [median per round]
    mins = {}
    cpu_ratio = {}  # runtime -> max over its processes of CPU time / wall time
    errors = {}
    outputs = {}
    info = {"argv": argv, "machine": machine(), "versions": versions(runtimes),
            "cpu_ratio": cpu_ratio}
    for m in models:
        for k in range(a.rounds):
            order = runtimes[k % len(runtimes):] + runtimes[:k % len(runtimes)]
            for rt in order:
                if (m.name, rt) in errors:
                    continue
                try:
                    r, out = run_once(rt, m, a, tools)
                except Fail as e:
                    errors[(m.name, rt)] = str(e)
                    print(f"{m.name:>36} {TITLES[rt]:>13}: {e}", file=sys.stderr)
                    continue
                if rt == "smof":
                    info["kernels"] = r.get("kernels", "?")
                rounds.setdefault((m.name, rt), []).append(r["median_ms"])
                mins[(m.name, rt)] = min(mins.get((m.name, rt), 1e30), r["min_ms"])
                cpu_ratio[rt] = max(cpu_ratio.get(rt, 0.0), r["cpu_per_wall"])
                outputs[(m.name, rt)] = out
                print(f"{m.name:>36} {TITLES[rt]:>13}: round {k + 1}  median {r['median_ms']:8.3f}"
                      f"  min {r['min_ms']:8.3f} ms", file=sys.stderr)

    # A runtime whose output disagrees with ONNX Runtime's did not run the same model.
    diffs = {}
    for m in models:
        ref = outputs.get((m.name, "ort"))
        if ref is None:
            continue
        scale = float(np.abs(ref).max()) or 1.0
        for rt in runtimes:
            out = outputs.get((m.name, rt))
            if rt == "ort" or out is None:
                continue
            if out.size != ref.size:
                errors[(m.name, rt)] = f"output has {out.size} values, ONNX Runtime's {ref.size}"
                rounds.pop((m.name, rt), None)
                continue
            d = float(np.abs(out - ref).max()) / scale
            diffs.setdefault(m.name, {})[rt] = d
            if not d < OUTPUT_TOL:
                errors[(m.name, rt)] = f"output differs from ONNX Runtime's by {d:.2e} of its max"
                rounds.pop((m.name, rt), None)
    results = {key: median(v) for key, v in rounds.items()}
    load1 = os.getloadavg()[0]

    block = render(a, results, errors, diffs, info, runtimes, models, started, (load0, load1))
    print(block)
    if not a.no_write:
        write_doc(a.doc, block, a.threads)
        print(f"compare: wrote {a.doc}", file=sys.stderr)
    return 1 if errors else 0


def main():
    ap = argparse.ArgumentParser(
        description="Times smof and its peers on ONNX models, single thread (or --threads), "
        "batch 1, and "
        "writes the table into docs/benchmarks.md.")
    ap.add_argument("models", nargs="*", help="ONNX models (default: ResNet-18, MobileNetV2, "
                    "SqueezeNet 1.1 from ../shared/models and the bundled MobileNetV2 backbone)")
    ap.add_argument("--loops", type=int, default=30, help="timed runs per round (default 30)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per model (default 3)")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads per runtime (default 1; tract always runs one)")
    ap.add_argument("--runtimes", default=",".join(RUNTIMES),
                    help=f"comma-separated subset of {','.join(RUNTIMES)} (default: all)")
    ap.add_argument("--work", default=os.path.join(ROOT, "target", "compare"),
                    help="folder for converted models and outputs (default target/compare)")
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "benchmarks.md"),
                    help="file to write the table into (default docs/benchmarks.md)")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    ap.add_argument("--skip-build", action="store_true",
                    help="use the binaries already built in target/ and tract-bench/target/")
    # Internal: run one Python runtime on one model.
    ap.add_argument("--worker", choices=["ort", "ncnn", "mnn"], help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--dump-output", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        a.model = a.models
        return worker_main(a)
    return driver_main(a, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
