# Shared by the arm64 runner's scripts (sourced, not run).
# The image cache lives outside the clone so CI on the same machine reuses it.
ARM64_CACHE=${GUESTMEM_ARM64_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guestmem/arm64}
ARM64_SUITE=trixie
t0=${t0:-$(date +%s)}

phase() { printf '[arm64 %4ds] %s\n' $(( $(date +%s) - t0 )) "$*" >&2; }
die() { printf 'arm64: %s\n' "$*" >&2; exit 1; }

# The Debian archive this machine's own apt uses: the first deb URI in its sources whose suites name the
# host's release (not its security suite). Read at run time so no archive's host name is written anywhere.
debian_archive() {
  local codename uri
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || die "cannot read the host's Debian release from /etc/os-release"
  uri=$(awk -v cn="$codename" '
      function flush() { if (deb && uri != "" && suites ~ ("(^| )" cn "( |$)") && found == "") found = uri; deb=0; uri=""; suites="" }
      FILENAME ~ /\.sources$/ {
        if ($0 ~ /^[ \t]*$/) { flush(); next }
        if ($1 == "Types:" && $0 ~ / deb( |$)/) deb=1
        if ($1 == "URIs:") uri=$2
        if ($1 == "Suites:") { suites=$0; sub(/^Suites:[ \t]*/, "", suites) }
        next
      }
      $1 == "deb" { u=$2; s=$3; if (u ~ /^\[/) { u=$3; s=$4 } ; if (s == cn && found == "") found=u }
      END { flush(); print found }' \
    $(ls /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null))
  [ -n "$uri" ] || die "no Debian archive for '$codename' found in this machine's apt sources"
  echo "${uri%/}"
}
