#!/bin/sh
# tests/expect_fail.sh CODE PATTERN CMD...: runs CMD and passes only when it exits with exactly CODE (so a crash,
# which exits 128+signal, fails) and its stderr has a line matching the extended regex PATTERN.
code=$1; pat=$2; shift 2
err=$("$@" 2>&1 >/dev/null); rc=$?
if [ "$rc" -ne "$code" ]; then echo "expected exit $code, got $rc: $err"; exit 1; fi
if ! printf '%s\n' "$err" | grep -Eq -- "$pat"; then echo "stderr does not match /$pat/: $err"; exit 1; fi
echo "ok: exit $rc: $err"
