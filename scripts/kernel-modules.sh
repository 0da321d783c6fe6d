# Sourced by testguest/build.sh and deploysys/build.sh: copies kernel
# modules of the running kernel ($mods) into an initramfs tree ($root),
# each after its dependencies (from modules.dep), and lists them in
# $root/modules.list in the order init loads them.
: > "$root/modules.list"
add() {
    local path deps
    # Built into this kernel: nothing to load.
    grep -q "/$1\.ko\(\.[a-z]*\)\{0,1\}$" "$mods/modules.builtin" 2>/dev/null && return
    path=$(awk -F: -v m="/$1.ko" '{ i = index($1, m); if (i > 0 && i == length($1) - length(m) + 1) print $1 }' "$mods/modules.dep" | head -n1)
    [ -n "$path" ] || { echo "module $1 not found" >&2; exit 1; }
    grep -qx "$(basename "$path")" "$root/modules.list" && return
    deps=$(awk -F: -v p="$path" '$1 == p {print $2}' "$mods/modules.dep")
    for d in $deps; do add "$(basename "$d" .ko)"; done
    cp "$mods/$path" "$root/modules/"
    basename "$path" >> "$root/modules.list"
}
