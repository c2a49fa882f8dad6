#!/usr/bin/env bash
# Adds every new public symbol to PublicAPI.Unshipped.txt of the given project (RS0016/RS0017 code fixes).
# Usage: eng/update-public-api.sh src/Kars.Policy/Kars.Policy.csproj
set -euo pipefail
for proj in "$@"; do
  dotnet format analyzers "$proj" --diagnostics RS0016 RS0017 RS0037 --severity info --no-restore 2>/dev/null || true
done
