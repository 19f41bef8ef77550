#!/bin/sh
# SageMaker entrypoint, as TGI's image has: maps SageMaker's variables onto the launcher's and listens on 8080.
set -e
[ -n "$SM_NUM_GPUS" ] && export NUM_SHARD="$SM_NUM_GPUS"
[ -n "$HF_MODEL_ID" ] && export MODEL_ID="$HF_MODEL_ID"
[ -n "$HF_MODEL_REVISION" ] && export REVISION="$HF_MODEL_REVISION"
# ignis refuses QUANTIZE with a one-line reason (it serves checkpoints as they are) and takes TRUST_REMOTE_CODE
[ -n "$HF_MODEL_QUANTIZE" ] && export QUANTIZE="$HF_MODEL_QUANTIZE"
[ -n "$HF_MODEL_TRUST_REMOTE_CODE" ] && export TRUST_REMOTE_CODE="$HF_MODEL_TRUST_REMOTE_CODE"
[ -z "$MODEL_ID" ] && [ -d /opt/ml/model ] && export MODEL_ID=/opt/ml/model
export PORT=8080
exec ignis serve "$@"
