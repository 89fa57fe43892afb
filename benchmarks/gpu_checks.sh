#!/usr/bin/env bash
# The GPU measurements the CPU cannot make, in one command that fits a lent GPU's 10-minute call:
#
#   bash benchmarks/gpu_checks.sh
#
# genjax's DCGAN (batch 512) and conv VAE (batch 1,024), where XLA trailed cuDNN, against eager PyTorch and
# torch.compile over channels-last modules, in float32 and in bfloat16, with a jax.profiler trace of each
# float32 genjax step; then the diffusion U-Net's training step at batch 128 against PyTorch. Each run has a
# time limit, so one that hangs costs only its share. Logs and the traces (one .tar.gz each; open with
# TensorBoard's profile plugin or Perfetto) go to $OUT, else runs/gpu_checks.
#
# GPU_CHECKS_DRY=1 runs the same commands on the CPU at batch 8, one round of one step: a check of the script.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-runs/gpu_checks}"
mkdir -p "$out"
device=gpu
sizes=(512 1024 128)
timing=(--rounds=3 --steps=20)
if [[ "${GPU_CHECKS_DRY:-0}" == 1 ]]; then
  device=cpu
  sizes=(8 8 8)
  timing=(--rounds=1 --steps=1)
fi

run() {  # run NAME SECONDS SCRIPT FLAGS...: the script's table to $out/NAME.log
  local name=$1 seconds=$2
  shift 2
  echo "== $name: $*"
  timeout "$seconds" python "$@" 2>&1 | grep -v '^[IW][0-9]\{4\} ' | tee "$out/$name.log"
  echo "== $name: exit ${PIPESTATUS[0]}"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
run dcgan_f32 130 benchmarks/dcgan_speed.py --device=$device --batch="${sizes[0]}" "${timing[@]}" --impls=xla,fast \
  --torch_compile --profile_dir="$out/dcgan_trace"
run vae_f32 110 benchmarks/vae_speed.py --device=$device --batch="${sizes[1]}" "${timing[@]}" --impls=xla,fast \
  --torch_compile --profile_dir="$out/vae_trace"
run dcgan_bf16 110 benchmarks/dcgan_speed.py --device=$device --batch="${sizes[0]}" "${timing[@]}" --impls=xla \
  --precision=bfloat16 --torch_compile
run vae_bf16 80 benchmarks/vae_speed.py --device=$device --batch="${sizes[1]}" "${timing[@]}" --impls=xla,fast \
  --precision=bfloat16
run unet_f32 120 benchmarks/diffusion_speed.py --device=$device --batch="${sizes[2]}" --ops=train --impls=fast \
  --rounds=3 --train_steps=5
# $OUT returns files at most two folders down, and a trace lies deeper: one archive per trace.
for trace in "$out"/*_trace; do
  [[ -d "$trace" ]] && tar -czf "$trace.tar.gz" -C "$trace" . && rm -rf "$trace"
done
ls -la "$out"
