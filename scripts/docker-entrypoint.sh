#!/bin/sh
# Entry point of the Docker image: `docker run IMAGE [COMMAND [ARGS...]]`.
#   (nothing)                      task4, the main job (checkpoint in /app/runs/task4)
#   task1 | task2 | task3 | task4  that binary with the given flags
#   mtt ARGS | embed|doctor|train|eval|predict ARGS   the mtt command line
#   --flag ...                     task4 with those flags
#   anything else                  run as given (e.g. sh)
set -e
case "${1:-}" in
  "") exec task4 ;;
  task1|task2|task3|task4|mtt) exec "$@" ;;
  embed|doctor|train|eval|predict) exec mtt "$@" ;;
  -*) exec task4 "$@" ;;
  *) exec "$@" ;;
esac
