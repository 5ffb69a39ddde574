#!/bin/sh
# `pxdiff design` on a GPU machine, in one device call: the condition embedder on CUDA against
# upstream's fixtures, compute-sanitizer memcheck of a short design run on CUDA, the design
# run against upstream's sampler (bench/gpu/design_gpu.py), and the per-call bench at 330
# tokens (no regression against docs/benchmarks.md).
#   Build here (make; nvcc needs no GPU) into BUILD (default build), carry it and
#   third_party/fullport/src (upstream, for the baseline), then on the GPU machine:
#   BUILD=build-dev sh bench/gpu/design_device.sh
set -u
B=${BUILD:-build}
OUTDIR=${OUT:-/tmp}
export PYTHONPATH=python:tests/ref PYTHONUNBUFFERED=1 PXDIFF_LIB=$PWD/$B/libpxdiff.so
[ -d third_party/fullport/src ] && export PXDIFF_UPSTREAM_PROTENIX=$PWD/third_party/fullport/src
[ "$B" = build ] || { rm -rf build; ln -s "$B" build; }
status=0
ldd build/pxdiff | grep "not found" && echo "MISSING LIBRARIES"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "== condition embedder on CUDA vs upstream's fixtures"
./build/tests/test_embedder 2>&1 | tail -4 || status=1
echo "== compute-sanitizer memcheck: a short pxdiff design on CUDA (small random weights)"
python3 - <<'EOF'
import torch, pxfixtures, pxembed_ref
d = dict(pxfixtures.SMALL_DIMS)
m = {"diffusion_module." + k: v for k, v in pxfixtures.random_state_dict(d, seed=5).items()}
m.update(pxembed_ref.random_state_dict(dict(c_atom=32, c_atompair=8, c_token=32, c_s_inputs=d["c_s_inputs"],
                                            c_z=d["c_z"], n_blocks=2, n_heads=4), seed=6))
torch.save({"model": m}, "/tmp/small.pt")
EOF
cat > /tmp/small.yaml <<'EOF'
task_name: small
target:
  file: tests/data/structures/5o45.cif
  chains:
    A:
      crop: ["18-60"]
      hotspots: [40]
binder_length: 12
EOF
for p in fp16 fp32; do
  compute-sanitizer --tool memcheck --error-exitcode 3 ./build/pxdiff design -i /tmp/small.yaml -o "/tmp/mc_$p" \
    --checkpoint /tmp/small.pt --N_sample 3 --N_step 3 --seeds 1 --device cuda --precision $p \
    > "$OUTDIR/memcheck_design_$p.log" 2>&1 || { status=1; echo "memcheck $p FAILED"; tail -20 "$OUTDIR/memcheck_design_$p.log"; }
  grep -E "ERROR SUMMARY" "$OUTDIR/memcheck_design_$p.log"
done
echo "== CPU and CUDA designs of the same seed (fp32): coordinates close, files identical but the coordinates"
./build/pxdiff design -i /tmp/small.yaml -o /tmp/cpu32 --checkpoint /tmp/small.pt --N_sample 2 --N_step 20 --seeds 4 --device cpu --quiet
./build/pxdiff design -i /tmp/small.yaml -o /tmp/gpu32 --checkpoint /tmp/small.pt --N_sample 2 --N_step 20 --seeds 4 --device cuda --precision fp32 --quiet
python3 - <<'EOF' || status=1
import numpy as np
def xyz(p):
    rows = [l.split() for l in open(p) if l.startswith("ATOM")]
    return np.array([[float(v) for v in r[15:18]] for r in rows])
for i in range(2):
    a = xyz(f"/tmp/cpu32/small/seed_4/predictions/small_sample_{i}.cif")
    b = xyz(f"/tmp/gpu32/small/seed_4/predictions/small_sample_{i}.cif")
    rms = np.sqrt(((a - b) ** 2).sum(1).mean())
    print(f"sample {i}: {len(a)} atoms, CPU vs CUDA fp32 RMS {rms:.2e} A")
    assert rms < 0.05, rms
EOF
echo "== pxdiff design vs upstream's sampler (quick start, 100 designs)"
python3 bench/gpu/design_gpu.py --samples "${SAMPLES:-100}" --upstream-samples "${UP_SAMPLES:-10}" --out "$OUTDIR" \
  > "$OUTDIR/design_gpu.log" 2>&1 || status=1
tail -8 "$OUTDIR/design_gpu.log"
echo "== per call, 330 tokens / 2320 atoms / 10 samples (default precision)"
./build/pxdiff bench --device cuda --tokens 330 --binder 80 --atoms 2320 --samples 10 --reps 20 | grep -E "backend|median"
exit $status
