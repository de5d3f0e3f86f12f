#!/usr/bin/env bash
# The GPU measurements in one script, for one machine with one NVIDIA GPU (written for an H100 with 16 CPU cores):
# about 6 minutes, at most ~8 (BUDGET_S, default 470 s, bounds all parts together; each part also has its own cap).
#
#   bash bench/gpu_suite.sh              # on the GPU machine, from the repository root; results in $OUT
#   QUICK=1 bash bench/gpu_suite.sh      # (or --quick) CPU smoke test of every part, tiny settings, ~2-3 minutes
#
# Results go to $OUT (default ./gpu-results), seven text files: machine.txt (nvidia-smi, lscpu), env.txt (python,
# torch, CUDA, packages), explain.txt, throughput.txt, resume.txt, fusion.txt and summary.txt (each part's exit code
# and time).
#
# Parts, in this order (estimated H100 wall time; cap):
#   setup       venv and imports                                                    ~10-20 s
#   explain     bench_explain.py on cuda: mlp and dcgan, fp32 and bf16; saliency, deeplift-shap (128 baselines),
#               lime (100, quickshift) against the plain step, and the original's per-sample loops (8 samples)
#                                                                                   ~20-30 s each; 50 s each
#   throughput  bench_throughput.py on cuda: the MLP study cell with N = 1 4 8 16 worker processes, the DCGAN
#               grid's cell with N = 1 4 8 (2 s settle + 8 s measured per N)        ~60 s and ~50 s; 90 s, 75 s
#   resume      check_resume.py on cuda: mlp and dcgan, 60 steps, stopped at 25 and resumed, with and without
#               deterministic: true                                                 ~30 s; 90 s
#   fusion      bench_fusion.py --device cuda --models mlp dcgan --batch 64 128 --rounds 5 --steps 20
#               (mostly torch.compile's compilations)                               ~2-3 min; what is left
# A part that fails or runs out of time is recorded in summary.txt and the script goes on with the next.
#
# Python: an existing .venv whose torch sees the GPU is used. Otherwise, where the system python3 has a CUDA torch,
# a venv over the system's packages (--system-site-packages; a .pth file adds the system's site-packages when
# python3 is itself a venv's), the project imported from src/ (PYTHONPATH); the packages the measurements need that
# a GPU image often lacks (captum, lime) are installed from $WHEELS (default .whl, filled beforehand on a machine
# with the package index: `pip download --no-deps captum lime -d .whl`) when that folder exists, else from the
# package index if it can be reached; without them the deeplift-shap and original-loop rows read n/a. Otherwise a
# fresh .venv gets torch==2.13.0 and the project with its extras (needs the package index).
set -u -o pipefail
cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        *) echo "usage: [QUICK=1] [OUT=folder] [BUDGET_S=470] bash bench/gpu_suite.sh [--quick]" >&2; exit 2 ;;
    esac
done
OUT=${OUT:-./gpu-results}
WHEELS=${WHEELS:-.whl}
BUDGET_S=${BUDGET_S:-470}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
SECONDS=0
export PYTHONUNBUFFERED=1

log() { echo "[gpu_suite $(printf '%4d' "$SECONDS") s] $*" | tee -a "$SUMMARY"; }

# run_part NAME CAP_S LOGFILE CMD...: CMD under `timeout`, at most CAP_S seconds and what is left of BUDGET_S,
# its output appended to LOGFILE and shown; its exit code and time go to summary.txt. Never stops the script.
run_part() {
    local name=$1 cap=$2 logfile=$3
    shift 3
    local left=$((BUDGET_S - SECONDS))
    local limit=$((cap < left ? cap : left))
    if ((limit < 10)); then
        log "$name: skipped, ${left} s left of the ${BUDGET_S} s budget"
        return 0
    fi
    local t0=$SECONDS rc
    {
        echo
        echo "=== $name (limit ${limit} s): $(printf '%q ' "$@")"
    } | tee -a "$logfile"
    timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$logfile"
    rc=${PIPESTATUS[0]}
    case $rc in
        0) log "$name: ok in $((SECONDS - t0)) s" ;;
        124 | 137) log "$name: TIMED OUT after $((SECONDS - t0)) s (limit ${limit} s)" ;;
        *) log "$name: FAILED (exit $rc) after $((SECONDS - t0)) s" ;;
    esac
    return 0
}

# -- the machine ---------------------------------------------------------------------------------------------------
{
    echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(uname -srm)"
    echo "git $(git rev-parse --short HEAD 2>/dev/null || echo '?'), uncommitted:"
    git status --short 2>/dev/null | head -40
    echo
    echo "## nvidia-smi"
    timeout 20 nvidia-smi 2>&1 || echo "(no nvidia-smi)"
    echo
    echo "## nvidia-smi -q (clocks, power)"
    timeout 20 nvidia-smi -q -d CLOCK,POWER,PERFORMANCE 2>&1 || true
    echo
    echo "## lscpu"
    lscpu 2>&1 || true
    echo
    echo "## memory"
    free -g 2>&1 || true
} >"$OUT/machine.txt"
log "machine: $OUT/machine.txt"

# -- python --------------------------------------------------------------------------------------------------------
has_torch() { "$1" -c 'import torch' >/dev/null 2>&1; }
has_cuda_torch() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; }
# pip for interpreter $1: its own, else python3's pointed at it
pip_for() {
    local py=$1
    shift
    if "$py" -m pip --version >/dev/null 2>&1; then
        "$py" -m pip "$@"
    else
        python3 -m pip --python "$py" "$@"
    fi
}

# a venv that sees the system python3's packages (torch with CUDA); the project is imported from src/ (PYTHONPATH)
system_venv() {
    local venv=$1
    python3 -m venv --system-site-packages "$venv" || python3 -m venv --without-pip --system-site-packages "$venv" ||
        return 1
    if ! has_torch "$venv/bin/python"; then # python3 is itself a venv's: its packages are not the "system" ones
        local site
        site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        python3 -c 'import site; print("\n".join(site.getsitepackages()))' >"$site/_system_packages.pth"
    fi
    local need=()
    for module in captum lime; do
        "$venv/bin/python" -c "import $module" >/dev/null 2>&1 || need+=("$module")
    done
    if ((${#need[@]})); then
        if [ -d "$WHEELS" ]; then
            pip_for "$venv/bin/python" install -q --no-index --find-links "$WHEELS" --no-build-isolation "${need[@]}" ||
                echo "could not install ${need[*]} from $WHEELS"
        else
            timeout 60 "$venv/bin/python" -m pip install -q --retries 0 --timeout 10 --no-build-isolation \
                "${need[@]}" ||
                echo "could not install ${need[*]} (no $WHEELS folder, no package index): their rows read n/a"
        fi
    fi
}

setup_python() {
    VENV=${VENV:-.venv}
    if [ -x "$VENV/bin/python" ] && has_torch "$VENV/bin/python"; then
        if [ "$QUICK" != 1 ] && ! has_cuda_torch "$VENV/bin/python" && has_cuda_torch python3; then
            echo "$VENV's torch has no CUDA; the system python3's has: a venv over it in ${TMPDIR:-/tmp}"
            VENV=${TMPDIR:-/tmp}/xaigan-gpu-venv
            [ -x "$VENV/bin/python" ] || system_venv "$VENV"
        fi
    elif has_cuda_torch python3 || { [ "$QUICK" = 1 ] && has_torch python3; }; then
        system_venv "$VENV"
    else
        python3 -m venv "$VENV" && timeout 600 "$VENV/bin/pip" install -q torch==2.13.0 -e '.[offline,test]'
    fi
    PY=$VENV/bin/python
    if ! has_torch "$PY"; then
        echo "$PY cannot import torch: using python3"
        PY=python3
    fi
}

# first of all: what the system python3 has
timeout 60 python3 -c 'import torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-"
print(f"system python3: torch {torch.__version__}, cuda available {torch.cuda.is_available()}, GPU {gpu}")' 2>&1 |
    tee "$OUT/env.txt"
setup_python >>"$OUT/env.txt" 2>&1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" # the working tree's package, installed or not
{
    echo "python: $PY"
    timeout 60 "$PY" - <<'EOF'
import importlib, platform, sys
import torch
print(f"Python {platform.python_version()}, torch {torch.__version__}, CUDA build {torch.version.cuda}")
print(f"torch.cuda.is_available(): {torch.cuda.is_available()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU: {torch.cuda.get_device_name(0)}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, "
          f"bf16 {torch.cuda.is_bf16_supported()}, cuDNN {torch.backends.cudnn.version()}")
for name in ("xaigan", "numpy", "captum", "lime", "skimage", "scipy", "yaml", "triton"):
    try:
        module = importlib.import_module(name)
        print(f"  {name} {getattr(module, '__version__', '')} ({getattr(module, '__file__', '?')})")
    except Exception as exc:
        print(f"  {name}: MISSING ({type(exc).__name__}: {exc})")
EOF
} >>"$OUT/env.txt" 2>&1
tail -n +2 "$OUT/env.txt"
log "setup: python $PY"

if [ "$QUICK" != 1 ] && ! has_cuda_torch "$PY"; then
    log "CUDA is not available to $PY: stopping (QUICK=1 runs the CPU smoke test)"
    exit 1
fi

# -- explain: our guided step and batched explainers against the original's per-sample loops ---------------------
THREE=(saliency "deeplift-shap (128 baselines)" "lime (100, quickshift)")
if [ "$QUICK" = 1 ]; then
    # CPU smoke: bf16 without AMX and the DCGAN's 128 x 128 deeplift-shap rows take minutes here: the cheap paths
    run_part "explain mlp fp32" 120 "$OUT/explain.txt" "$PY" bench/bench_explain.py --device cpu --model mlp \
        --precision fp32 --repeats 1 --original-samples 2 --setup-steps 2 --threads 1 --only "${THREE[@]}"
    run_part "explain mlp bf16" 60 "$OUT/explain.txt" "$PY" bench/bench_explain.py --device cpu --model mlp \
        --precision bf16 --repeats 1 --original-samples 2 --setup-steps 1 --threads 1 --only saliency
    run_part "explain dcgan fp32" 60 "$OUT/explain.txt" "$PY" bench/bench_explain.py --device cpu --model dcgan \
        --precision fp32 --repeats 1 --original-samples 2 --setup-steps 1 --threads 1 --only saliency
else
    for model in mlp dcgan; do
        for precision in fp32 bf16; do
            run_part "explain $model $precision" 50 "$OUT/explain.txt" "$PY" bench/bench_explain.py \
                --device cuda --model "$model" --precision "$precision" --repeats 5 --original-samples 8 \
                --threads 4 --only "${THREE[@]}"
        done
    done
fi

# -- throughput: runs per hour with N worker processes on one machine ----------------------------------------------
if [ "$QUICK" = 1 ]; then
    run_part "throughput mlp" 75 "$OUT/throughput.txt" "$PY" bench/bench_throughput.py --device cpu --models mlp \
        --workers 1 2 --seconds 3 --settle 1 --warmup-steps 1 --set precision=fp32
    run_part "throughput dcgan" 75 "$OUT/throughput.txt" "$PY" bench/bench_throughput.py --device cpu --models dcgan \
        --workers 1 2 --seconds 3 --settle 1 --warmup-steps 1 --set batch_size=32
else
    run_part "throughput mlp" 90 "$OUT/throughput.txt" "$PY" bench/bench_throughput.py --device cuda --models mlp \
        --workers 1 4 8 16 --seconds 8 --settle 2 --warmup-steps 5 --start-timeout 60
    run_part "throughput dcgan" 75 "$OUT/throughput.txt" "$PY" bench/bench_throughput.py --device cuda \
        --models dcgan --workers 1 4 8 --seconds 8 --settle 2 --warmup-steps 5 --start-timeout 60
fi

# -- resume: is a killed-and-resumed run equal to an uninterrupted one, with and without deterministic: true -------
if [ "$QUICK" = 1 ]; then
    run_part "resume" 90 "$OUT/resume.txt" "$PY" bench/check_resume.py --device cpu --models mlp --steps 8 --stop 3
else
    run_part "resume" 90 "$OUT/resume.txt" "$PY" bench/check_resume.py --device cuda --models mlp dcgan \
        --steps 60 --stop 25
fi

# -- fusion: the step with fused Adam, torch.compile and deterministic algorithms against the default ------------
if [ "$QUICK" = 1 ]; then
    run_part "fusion" 120 "$OUT/fusion.txt" "$PY" bench/bench_fusion.py --device cpu --models mlp --batch 16 \
        --rounds 1 --steps 1 --threads 1
else
    run_part "fusion" 300 "$OUT/fusion.txt" "$PY" bench/bench_fusion.py --device cuda --models mlp dcgan \
        --batch 64 128 --rounds 5 --steps 20
fi

log "done in ${SECONDS} s; results in $OUT"
