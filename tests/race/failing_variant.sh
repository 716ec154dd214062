#!/bin/sh
# A stand-in variant for pgolf-race's tests: `info` works, training fails with a message on stderr.
if [ "$1" = info ]; then
  echo "total parameters: 1234"
  exit 0
fi
echo "failing_variant: simulated training failure" >&2
exit 3
