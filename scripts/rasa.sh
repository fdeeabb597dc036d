#!/usr/bin/env bash
# Rasa backend for replydesk: a separate Python 3.10 venv with rasa==3.6.21, an NLU model
# trained on nlu_data/ (cached by content hash), and `rasa run --enable-api` on loopback.
#
#   scripts/rasa.sh venv    create the venv if missing
#   scripts/rasa.sh train   venv + train (skipped when a model for this data exists)
#   scripts/rasa.sh run     venv + train + serve in the foreground (what `make rasa` runs)
#
# Environment: RASA_VENV (default ~/.cache/replydesk-rasa-venv), RASA_PORT (5005),
# RASA_MODELS (default ~/.cache/replydesk-rasa-models), NLU_DATA (default ./nlu_data).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RASA_VENV:-$HOME/.cache/replydesk-rasa-venv}"
PORT="${RASA_PORT:-5005}"
MODELS="${RASA_MODELS:-$HOME/.cache/replydesk-rasa-models}"
DATA="${NLU_DATA:-$ROOT/nlu_data}"
RASA_VERSION="3.6.21"

log() { echo "rasa.sh: $*" >&2; }

ensure_venv() {
  if [[ -x "$VENV/bin/rasa" ]] && "$VENV/bin/python" -c "import rasa, sys; sys.exit(rasa.__version__ != '$RASA_VERSION')" 2>/dev/null; then
    return
  fi
  log "creating $VENV (python 3.10, rasa==$RASA_VERSION; takes a few minutes)"
  local py
  if command -v pyenv >/dev/null 2>&1 && PYENV_VERSION=3.10.13 pyenv which python3.10 >/dev/null 2>&1; then
    py="$(PYENV_VERSION=3.10.13 pyenv which python3.10)"
  else
    py="$(command -v python3.10)" || { log "python3.10 not found (pyenv install 3.10.13)"; exit 1; }
  fi
  rm -rf "$VENV"
  PYENV_VERSION=3.10.13 "$py" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet "rasa==$RASA_VERSION"
}

model_name() {
  # Same inputs as the rasa model: the Rasa NLU files and the pipeline.
  local h
  h="$(cd "$DATA" && find nlu -name '*.yml' -print0 | sort -z | xargs -0 cat config.yml | sha256sum | cut -c1-16)"
  echo "nlu-$h"
}

train() {
  ensure_venv
  local name; name="$(model_name)"
  if [[ -f "$MODELS/$name.tar.gz" ]]; then
    log "model $name is current"
    return
  fi
  mkdir -p "$MODELS"
  log "training $name"
  # Rasa writes caches and telemetry config under the working directory / home.
  (cd "$MODELS" && RASA_TELEMETRY_ENABLED=false "$VENV/bin/rasa" train nlu \
      --nlu "$DATA/nlu" --config "$DATA/config.yml" --out "$MODELS" --fixed-model-name "$name" --quiet)
}

run() {
  train
  local name; name="$(model_name)"
  log "serving $name on 127.0.0.1:$PORT"
  cd "$MODELS"
  RASA_TELEMETRY_ENABLED=false exec "$VENV/bin/rasa" run --enable-api -i 127.0.0.1 -p "$PORT" \
    -m "$MODELS/$name.tar.gz"
}

case "${1:-run}" in
  venv) ensure_venv ;;
  train) train ;;
  run) run ;;
  model-name) model_name ;;
  *) echo "usage: $0 [venv|train|run|model-name]" >&2; exit 2 ;;
esac
