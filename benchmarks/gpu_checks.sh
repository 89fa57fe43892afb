#!/usr/bin/env bash
# The GPU measurements the CPU cannot make, as one command for a lent GPU:
#
#   bash benchmarks/gpu_checks.sh [STAGE ...]
#
# Stages (all by default, in this order; name some to run or rerun only those):
#   dcgan_f32   DCGAN, batch 512: genjax xla and fast, eager PyTorch, torch.compile; a trace of genjax xla
#   vae_f32     conv VAE, batch 1,024: the same, a trace of genjax xla
#   dcgan_bf16  DCGAN, batch 512, bfloat16: genjax xla, eager PyTorch under autocast, torch.compile
#   vae_bf16    conv VAE, batch 1,024, bfloat16: genjax xla and fast, eager PyTorch under autocast
#   unet_f32    the diffusion U-Net's training step, batch 128: genjax fast, eager PyTorch, torch.compile
#   unet_bf16   the same in bfloat16 (PyTorch's net calls under autocast)
# Each stage has a time limit, so one that hangs costs only its share: at most 6.5 minutes for the first four,
# 5 for the two U-Net stages (torch.compile's compile dominates them), so on a lent GPU, whose calls last at most
# 10 minutes, run the U-Net stages as a second call. Logs and the
# traces (one .tar.gz each; TensorBoard's profile plugin or Perfetto open them) go to $OUT, else
# runs/gpu_checks. The machine's image lacks ml-collections: carry its wheel in .whl/ (docs/speed.md).
#
# GPU_CHECKS_DRY=1 runs the same stages on the CPU at batch 8 and fewer rounds: a check of the script.
set -uo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"
out="${OUT:-runs/gpu_checks}"
mkdir -p "$out"
device=gpu
sizes=(512 1024 128)
timing=(--rounds=3 --steps=10)
unet_timing=(--rounds=3 --train_steps=5)
if [[ "${GPU_CHECKS_DRY:-0}" == 1 ]]; then
  device=cpu
  sizes=(8 8 8)
  timing=(--rounds=1 --steps=1)
  unet_timing=(--rounds=1 --train_steps=1)
fi
if ! "$py" -c "import ml_collections" 2>/dev/null; then
  "$py" -m pip install -q --no-index --find-links .whl ml-collections \
    || { echo "error: ml-collections is missing and no wheel of it is in .whl/ (docs/speed.md)"; exit 1; }
fi
all=(dcgan_f32 vae_f32 dcgan_bf16 vae_bf16 unet_f32 unet_bf16)
stages=("$@")
[[ ${#stages[@]} -gt 0 ]] || stages=("${all[@]}")
for stage in "${stages[@]}"; do
  [[ " ${all[*]} " == *" $stage "* ]] || { echo "error: unknown stage $stage; allowed: ${all[*]}"; exit 2; }
done

run() {  # run NAME SECONDS SCRIPT FLAGS...: the script's output, unbuffered, to $out/NAME.log
  local name=$1 seconds=$2 start=$SECONDS
  shift 2
  echo "== $name: $*"
  PYTHONUNBUFFERED=1 timeout -k 10 "$seconds" "$py" "$@" 2>&1 | grep --line-buffered -v '^[IW][0-9]\{4\} ' \
    | tee "$out/$name.log"
  echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
for stage in "${stages[@]}"; do
  case "$stage" in
    dcgan_f32) run dcgan_f32 120 benchmarks/dcgan_speed.py --device=$device --batch="${sizes[0]}" "${timing[@]}" \
      --impls=xla,fast --torch_compile --profile_dir="$out/dcgan_trace" ;;
    vae_f32) run vae_f32 100 benchmarks/vae_speed.py --device=$device --batch="${sizes[1]}" "${timing[@]}" \
      --impls=xla,fast --torch_compile --profile_dir="$out/vae_trace" ;;
    dcgan_bf16) run dcgan_bf16 100 benchmarks/dcgan_speed.py --device=$device --batch="${sizes[0]}" \
      "${timing[@]}" --impls=xla --precision=bfloat16 --torch_compile ;;
    vae_bf16) run vae_bf16 70 benchmarks/vae_speed.py --device=$device --batch="${sizes[1]}" "${timing[@]}" \
      --impls=xla,fast --precision=bfloat16 ;;
    unet_f32) run unet_f32 150 benchmarks/diffusion_speed.py --device=$device --batch="${sizes[2]}" --ops=train \
      --impls=fast "${unet_timing[@]}" --torch_compile ;;
    unet_bf16) run unet_bf16 150 benchmarks/diffusion_speed.py --device=$device --batch="${sizes[2]}" --ops=train \
      --impls=fast "${unet_timing[@]}" --precision=bfloat16 --torch_compile ;;
  esac
done
# $OUT returns files at most two folders down, and a trace lies deeper: one archive per trace.
for trace in "$out"/*_trace; do
  [[ -d "$trace" ]] && tar -czf "$trace.tar.gz" -C "$trace" . && rm -rf "$trace"
done
ls -la "$out"
