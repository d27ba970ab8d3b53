#!/usr/bin/env python3
"""Write the gate's .wasm as a Wasm artifact image (the "oci" variant) into an OCI layout.

    scripts/oci_wasm_artifact.py --wasm FILE --layout DIR --tag TAG --created RFC3339 --version V

The rule followed is the one Istio's agent applies (istio/istio pkg/wasm/imagefetcher.go,
extractOCIArtifactImage, after the compat form failed): the image manifest has exactly two
entries in `layers` (not counting `config`), and the first of them whose media type is
`application/vnd.module.wasm.content.layer.v1+wasm` is taken as the raw module, read as it
is (never gunzipped). Istio's own test image pairs it with a layer of media type
`application/vnd.module.wasm.config.v1+json`, as the Wasm Artifact Image Specification
(solo-io/wasm spec/spec.md) lays out: one config layer, one content layer. So:

    config:  application/vnd.module.wasm.config.v1+json       runtime-config.json
    layers:  application/vnd.module.wasm.config.v1+json       runtime-config.json (same blob)
             application/vnd.module.wasm.content.layer.v1+wasm plugin.wasm (the .wasm, byte for byte)

The manifest's `config` carries the same JSON, so registries and tools that recognise a Wasm
artifact by its config media type (what `oras push --config` and wasm-to-oci produce) see one
too. Config and config layer are one blob with one media type on purpose: go-containerregistry
(which Istio's agent uses) answers a layer's media type from the manifest's config
descriptor first when the digests are equal (partial.BlobDescriptor), so the two must agree. A manifest with only the content layer (what a plain `oras push` of the .wasm makes) is
rejected by Istio ("number of layers must be 2", engineerd/wasm-to-oci#45).

Why this writes JSON itself instead of calling a tool: no packaged tool here writes an
image manifest with these custom media types into a local OCI layout. umoci and skopeo
only make tar layers, Debian 12's buildah (1.28) predates `manifest add --artifact`, the
oras CLI is not in Debian 12, and oras-py only talks to registries (it copies a layout to a
registry, it does not make one). Nothing here is tar or gzip: the two blobs are the files
themselves, so what is written is three small JSON documents (runtime config, manifest,
index.json) and `oci-layout`. `make oci` then has skopeo read the result back and copy it
(which checks every digest and size), and `make oci-check` checks it the way Istio reads it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASM_CONTENT = "application/vnd.module.wasm.content.layer.v1+wasm"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TITLE = "org.opencontainers.image.title"


def canonical(obj: object) -> bytes:
    """The bytes a JSON document is stored as: sorted keys, no spaces, so rebuilds are identical."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def put_blob(layout: Path, data: bytes) -> str:
    """Stores `data` under blobs/sha256/ and returns its digest."""
    hexdigest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / hexdigest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"sha256:{hexdigest}"


def descriptor(media_type: str, digest: str, size: int, title: str | None = None) -> dict:
    desc: dict = {"mediaType": media_type, "digest": digest, "size": size}
    if title:
        desc["annotations"] = {TITLE: title}
    return desc


def runtime_config(root_id: str) -> bytes:
    """The spec's runtime config for Envoy: the ABI the module exports and its root id."""
    return canonical(
        {
            "type": "envoy_proxy",
            "abiVersions": ["proxy_abi_version_0_2_1"],
            "config": {"root_ids": [root_id]},
        }
    )


def write_layout(wasm: bytes, layout: Path, tag: str, created: str, version: str) -> str:
    """Writes a fresh layout at `layout` holding one manifest tagged `tag`; returns its digest."""
    if not wasm.startswith(b"\0asm"):
        raise SystemExit("oci_wasm_artifact: the input is not a Wasm module (no \\0asm magic)")
    if layout.exists():
        shutil.rmtree(layout)
    layout.mkdir(parents=True)
    (layout / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
    config = runtime_config("wechat_gate")
    config_digest = put_blob(layout, config)
    wasm_digest = put_blob(layout, wasm)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(WASM_CONFIG, config_digest, len(config)),
        "layers": [
            descriptor(WASM_CONFIG, config_digest, len(config), "runtime-config.json"),
            descriptor(WASM_CONTENT, wasm_digest, len(wasm), "plugin.wasm"),
        ],
        "annotations": {
            "org.opencontainers.image.created": created,
            "org.opencontainers.image.title": "wechat-gate",
            "org.opencontainers.image.version": version,
            "module.wasm.image/variant": "oci",
        },
    }
    body = canonical(manifest)
    manifest_digest = put_blob(layout, body)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest,
                "size": len(body),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (layout / "index.json").write_bytes(canonical(index))
    return manifest_digest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wasm", required=True, type=Path)
    parser.add_argument("--layout", required=True, type=Path)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--created", required=True, help="RFC 3339 time, e.g. 2026-01-01T00:00:00Z")
    parser.add_argument("--version", required=True)
    args = parser.parse_args()
    digest = write_layout(args.wasm.read_bytes(), args.layout, args.tag, args.created, args.version)
    print(digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
