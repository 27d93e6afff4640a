#!/bin/bash
# Multi-node distillation with SLURM: one torchrun per node, one process per GPU.
#
#   sbatch examples/slurm_distill.sh
#
# 2 nodes x 8 GPUs = 16 processes. train.batch_size is per process, so the global batch is
# 16 x 64 = 1024 here: scale train.lr with it (linear rule) or keep the recipe's global batch
# by lowering train.batch_size. The run folder must be on a file system every node sees.
# Preempted or out of time, the job is requeued and this script continues the run from its
# last checkpoint (--resume), on however many nodes the requeued job gets.
#
#SBATCH --job-name=ofakd-distill
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1          # one torchrun per node; it starts the node's 8 processes
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=24:00:00
#SBATCH --signal=TERM@180            # SIGTERM 3 minutes before the time limit: a recovery checkpoint
#SBATCH --requeue
#SBATCH --output=%x-%j.out

set -euo pipefail

RUN_DIR=${RUN_DIR:-runs/ofa-deit_tiny-resnet18-imagenet}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
PORT=${PORT:-29500}
export OMP_NUM_THREADS=$(( SLURM_CPUS_PER_TASK / GPUS_PER_NODE ))

if [ -f "$RUN_DIR/last.pt" ]; then
    ARGS=(--resume "$RUN_DIR")      # a requeued job: continue exactly where the last one stopped
else
    ARGS=(--config imagenet-cnn --data.root /data/imagenet
          --teacher deit_tiny_patch16_224 --teacher-checkpoint checkpoints/deit_tiny.pth
          --student resnet18 --method ofa --method.eps "[1.5]"
          --train.batch_size 64 --train.lr 0.2     # 16 processes x 64 = 1024 images a step
          --out-dir "$(dirname "$RUN_DIR")" --name "$(basename "$RUN_DIR")" --overwrite)  # a first try that saved nothing
fi

# Each node's torchrun meets the others at HEAD_NODE:PORT (c10d rendezvous). A process that dies
# takes the job down: the others stop within train.dist_timeout (default 1800 s) and last.pt stays whole.
srun --kill-on-bad-exit=1 torchrun \
    --nnodes="$SLURM_JOB_NUM_NODES" --nproc_per_node="$GPUS_PER_NODE" \
    --rdzv-id="$SLURM_JOB_ID" --rdzv-backend=c10d --rdzv-endpoint="$HEAD_NODE:$PORT" \
    -m ofakd distill "${ARGS[@]}"
