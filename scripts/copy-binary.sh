# Sourced by deploysys/build.sh and testguest/env.sh: copy_binary ROOT NAME
# puts the binary NAME (found on PATH) and the libraries ldd names for it
# into ROOT at the same paths, so it runs there without the host's /usr.
copy_binary() {
    local root=$1 b lib
    b=$(command -v "$2") || { echo "missing $2 (scripts/setup.sh installs it)" >&2; exit 1; }
    mkdir -p "$root$(dirname "$b")"
    cp -L "$b" "$root$b"
    for lib in $(ldd "$b" 2>/dev/null | grep -o '/[^ ]*'); do
        [ -e "$root$lib" ] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}
