#!/usr/bin/env bash
# `make oci`: the gate's .wasm as OCI images for Istio's WasmPlugin (`url: oci://...`),
# built without docker, in the two forms Istio's agent unpacks (istio/istio
# pkg/wasm/imagefetcher.go). Both are OCI layouts tagged with the crate's version:
#
#   target/oci/compat  "compat" form: an image whose last (only) layer is an
#                      application/vnd.oci.image.layer.v1.tar+gzip holding plugin.wasm at
#                      the root of the tar; the manifest is annotated
#                      module.wasm.image/variant=compat. Built with umoci. Any registry
#                      takes it; this is the one to push unless you want the other.
#   target/oci/wasm    Wasm artifact ("oci") form: exactly two layers, the runtime config
#                      (application/vnd.module.wasm.config.v1+json) and the raw module
#                      (application/vnd.module.wasm.content.layer.v1+wasm); written by
#                      scripts/oci_wasm_artifact.py (its header says which rule and why no
#                      tool). Needs a registry that takes custom media types.
#   target/oci/wechat-gate-TAG-{compat,wasm}.tar   the same, as oci-archive tarballs
#
# Usage: scripts/build-oci.sh [WASM]   (default target/wasm32-wasip1/release/wechat_gate.wasm)
# Times inside the images come from SOURCE_DATE_EPOCH (default: the last commit's time), so
# the same .wasm and commit give the same digests.
set -euo pipefail
cd "$(dirname "$0")/.."
WASM=${1:-target/wasm32-wasip1/release/wechat_gate.wasm}
OUT=target/oci
TAG=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
[ -n "$TAG" ] || { echo "make oci: no version in Cargo.toml" >&2; exit 1; }
[ -f "$WASM" ] || { echo "make oci: $WASM not found (cargo build --release --target wasm32-wasip1 -p wechat-gate)" >&2; exit 1; }
scripts/ensure-oci-tools.sh

EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
CREATED=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)
WORK=$OUT/.work
rm -rf "$OUT/compat" "$OUT/wasm" "$WORK" "$OUT"/wechat-gate-*.tar
mkdir -p "$WORK"

# compat: umoci. The layer comes from `unpack` + `repack` and not from `umoci insert`: the
# insert of Debian 12's umoci (0.4.7) writes a layer tar without its end-of-archive blocks
# (opencontainers/umoci#436); Istio's reader would cope, tar and containerd do not.
C=$OUT/compat
umoci init --layout "$C"
umoci new --image "$C:$TAG"
umoci unpack --rootless --image "$C:$TAG" "$WORK/bundle" >/dev/null
install -m 0644 "$WASM" "$WORK/bundle/rootfs/plugin.wasm"
touch -d "@$EPOCH" "$WORK/bundle/rootfs/plugin.wasm" "$WORK/bundle/rootfs"
umoci repack --image "$C:$TAG" --history.created "$CREATED" \
  --history.created_by "make oci: plugin.wasm" "$WORK/bundle" >/dev/null
umoci config --image "$C:$TAG" --no-history --created "$CREATED" --os wasip1 --architecture wasm \
  --manifest.annotation module.wasm.image/variant=compat \
  --manifest.annotation "org.opencontainers.image.created=$CREATED" \
  --manifest.annotation org.opencontainers.image.title=wechat-gate \
  --manifest.annotation "org.opencontainers.image.version=$TAG"
umoci gc --layout "$C"

# The Wasm artifact form.
python3 scripts/oci_wasm_artifact.py --wasm "$WASM" --layout "$OUT/wasm" --tag "$TAG" \
  --created "$CREATED" --version "$TAG" >/dev/null

# skopeo reads each layout back (every blob checked against its digest and size) into an
# oci-archive, keeping the manifest as it is.
for form in compat wasm; do
  skopeo copy --quiet --preserve-digests "oci:$OUT/$form:$TAG" "oci-archive:$OUT/wechat-gate-$TAG-$form.tar"
done
rm -rf "$WORK"

wasm_sha=$(sha256sum "$WASM" | cut -d' ' -f1)
echo "make oci: $WASM ($(stat -c %s "$WASM") bytes, sha256 $wasm_sha)"
for form in compat wasm; do
  echo
  # The digest is over the manifest's exact bytes: read them from the pipe, never through $(...)
  # (which drops umoci's trailing newline).
  skopeo inspect --raw "oci:$OUT/$form:$TAG" | python3 -c '
import hashlib, json, sys
raw = sys.stdin.buffer.read()
m = json.loads(raw)
print("  %s   manifest sha256:%s" % (sys.argv[1], hashlib.sha256(raw).hexdigest()))
print("    config  %-52s %8d bytes" % (m["config"]["mediaType"], m["config"]["size"]))
for layer in m["layers"]:
    print("    layer   %-52s %8d bytes %s" % (layer["mediaType"], layer["size"], layer["digest"][:19]))' "oci:$OUT/$form:$TAG"
done
cat <<EOF

Push one of them (skopeo login REGISTRY first if it needs credentials):
  skopeo copy --preserve-digests oci:$OUT/compat:$TAG docker://REGISTRY/wechat-gate:$TAG
  skopeo copy --preserve-digests oci:$OUT/wasm:$TAG docker://REGISTRY/wechat-gate:$TAG-wasm
then in the WasmPlugin: url: oci://REGISTRY/wechat-gate:$TAG (or :$TAG-wasm), and optionally
sha256: the manifest digest above without "sha256:" (Istio compares it with the image's
manifest digest, not with the .wasm's). --preserve-digests makes skopeo fail rather than
convert the manifest (which would change that digest). See envoy/istio/README.md.
EOF
