#!/usr/bin/env python3
"""`make oci-check`: the images `make oci` built hold the built .wasm, read the way Istio reads them.

    scripts/check_oci.py --wasm FILE [--out target/oci] [--tag TAG (default: the crate version)]

For each form, skopeo is the reader: `skopeo inspect --raw` gives the manifest the layout's
index.json names (its sha256 must be that digest), and `skopeo copy` to a `dir:` gives the
blobs, each checked by skopeo against its digest and size. Then, as Istio's agent does
(istio/istio pkg/wasm/imagefetcher.go):

- compat (target/oci/compat): the manifest's last layer must be
  application/vnd.oci.image.layer.v1.tar+gzip; gunzip + untar it and take `plugin.wasm`.
  Stricter than Istio: exactly one layer, `plugin.wasm` at the root of the tar (a regular
  file), the tar complete (end-of-archive blocks), the config's last diff_id = sha256 of the
  tar, and the manifest annotated module.wasm.image/variant=compat.
- wasm (target/oci/wasm): exactly two layers; the one of media type
  application/vnd.module.wasm.content.layer.v1+wasm is the module, read as it is. Stricter:
  the other is application/vnd.module.wasm.config.v1+json (so is the manifest's config),
  a runtime config naming the root id wechat_gate.

Either way the module's sha256 must equal the built .wasm's, and start with \\0asm (Istio's
own check). The oci-archive tarballs must carry the same manifests. Then the check is run on
broken copies of the two layouts (wrong media type, no plugin.wasm, one layer, a truncated
tar, a different module, a corrupt blob, ...): each one must be refused, or the check itself
fails. Exit status 1 on any mismatch, with a message naming it.
"""
from __future__ import annotations

import argparse
import copy
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path
from typing import Callable

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASM_CONTENT = "application/vnd.module.wasm.content.layer.v1+wasm"
ROOT_ID = "wechat_gate"


class Refused(Exception):
    """An image that Istio would not unpack to the built module."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run(args: list[str]) -> bytes:
    out = subprocess.run(args, capture_output=True)
    if out.returncode != 0:
        raise Refused(f"`{' '.join(args)}` failed: {out.stderr.decode(errors='replace').strip()}")
    return out.stdout


class Image:
    """One tagged manifest of an OCI layout, with its blobs, as skopeo reads them."""

    def __init__(self, ref: str, scratch: Path):
        self.ref = ref
        self.raw = run(["skopeo", "inspect", "--raw", ref])
        self.digest = "sha256:" + sha256(self.raw)
        try:
            self.manifest = json.loads(self.raw)
        except ValueError as err:
            raise Refused(f"{ref}: the manifest is not JSON ({err})") from err
        self.blobs = scratch / "blobs"
        shutil.rmtree(self.blobs, ignore_errors=True)
        run(["skopeo", "copy", "--quiet", "--preserve-digests", ref, f"dir:{self.blobs}"])

    def blob(self, desc: dict) -> bytes:
        data = (self.blobs / desc["digest"].split(":", 1)[-1]).read_bytes()
        if "sha256:" + sha256(data) != desc["digest"] or len(data) != desc["size"]:
            raise Refused(f"{self.ref}: blob {desc['digest']} does not match its descriptor")
        return data

    def layers(self) -> list[dict]:
        layers = self.manifest.get("layers")
        if self.manifest.get("schemaVersion") != 2 or not isinstance(layers, list):
            raise Refused(f"{self.ref}: not a schemaVersion 2 image manifest")
        if self.manifest.get("mediaType", OCI_MANIFEST) != OCI_MANIFEST:
            raise Refused(f"{self.ref}: manifest media type {self.manifest.get('mediaType')}, want {OCI_MANIFEST}")
        return layers


def indexed_digest(layout: Path, tag: str) -> str:
    """The digest index.json gives the tag (what a registry serves after `skopeo copy`)."""
    index = json.loads((layout / "index.json").read_text())
    found = [
        m["digest"]
        for m in index.get("manifests", [])
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    ]
    if len(found) != 1:
        raise Refused(f"{layout}/index.json: {len(found)} manifests tagged {tag!r}, want 1")
    return found[0]


def want_module(module: bytes, want_sha: str, where: str) -> None:
    if not module.startswith(b"\0asm"):
        raise Refused(f"{where}: not a Wasm module (no \\0asm magic; Istio: invalid Wasm binary)")
    if sha256(module) != want_sha:
        raise Refused(f"{where}: sha256 {sha256(module)} != the built .wasm's {want_sha}")


def plugin_from_tar(tar: bytes, where: str) -> bytes:
    """plugin.wasm from a complete tar, at its root; the tar read to its end."""
    if len(tar) % 512 or len(tar) < 1024 or tar[-1024:] != bytes(1024):
        raise Refused(f"{where}: the tar is not complete (no end-of-archive blocks)")
    found = None
    try:
        with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as archive:
            for member in archive:
                base = member.name.rstrip("/").rsplit("/", 1)[-1]
                if base == "plugin.wasm" and found is None:
                    if member.name not in ("plugin.wasm", "./plugin.wasm") or not member.isreg():
                        raise Refused(f"{where}: plugin.wasm is {member.name!r}, not a file at the root")
                    found = archive.extractfile(member).read()
    except tarfile.TarError as err:
        raise Refused(f"{where}: not a well-formed tar ({err})") from err
    if found is None:
        raise Refused(f"{where}: plugin.wasm not found in the archive")
    return found


def check_compat(image: Image, want_sha: str) -> str:
    layers = image.layers()
    if len(layers) != 1:
        raise Refused(f"{image.ref}: {len(layers)} layers, want 1 (plugin.wasm in the only layer)")
    last = layers[-1]
    if last.get("mediaType") != OCI_LAYER_GZIP:
        raise Refused(f"{image.ref}: last layer {last.get('mediaType')}, Istio's compat form needs {OCI_LAYER_GZIP}")
    if image.manifest.get("annotations", {}).get("module.wasm.image/variant") != "compat":
        raise Refused(f"{image.ref}: no module.wasm.image/variant=compat annotation")
    config_desc = image.manifest.get("config", {})
    if config_desc.get("mediaType") != OCI_CONFIG:
        raise Refused(f"{image.ref}: config {config_desc.get('mediaType')}, want {OCI_CONFIG}")
    try:
        tar = gzip.decompress(image.blob(last))
    except (OSError, EOFError) as err:
        raise Refused(f"{image.ref}: the last layer is not gzip ({err})") from err
    diff_ids = json.loads(image.blob(config_desc)).get("rootfs", {}).get("diff_ids", [])
    if diff_ids[-1:] != ["sha256:" + sha256(tar)]:
        raise Refused(f"{image.ref}: the config's diff_id is not the layer's uncompressed sha256")
    module = plugin_from_tar(tar, f"{image.ref} layer {last['digest']}")
    want_module(module, want_sha, f"{image.ref} plugin.wasm")
    return f"1 layer {OCI_LAYER_GZIP} ({last['size']} bytes) -> plugin.wasm {len(module)} bytes"


def check_wasm(image: Image, want_sha: str) -> str:
    layers = image.layers()
    if len(layers) != 2:
        raise Refused(f"{image.ref}: {len(layers)} layers, Istio's Wasm artifact form needs exactly 2")
    types = sorted(layer.get("mediaType") for layer in layers)
    if types != sorted([WASM_CONFIG, WASM_CONTENT]):
        raise Refused(f"{image.ref}: layer media types {types}, want one {WASM_CONTENT} and one {WASM_CONFIG}")
    if image.manifest.get("config", {}).get("mediaType") != WASM_CONFIG:
        raise Refused(f"{image.ref}: config {image.manifest.get('config', {}).get('mediaType')}, want {WASM_CONFIG}")
    content = next(layer for layer in layers if layer["mediaType"] == WASM_CONTENT)
    config = next(layer for layer in layers if layer["mediaType"] == WASM_CONFIG)
    try:
        root_ids = json.loads(image.blob(config))["config"]["root_ids"]
    except (ValueError, KeyError, TypeError) as err:
        raise Refused(f"{image.ref}: the runtime config layer has no config.root_ids ({err})") from err
    if ROOT_ID not in root_ids:
        raise Refused(f"{image.ref}: the runtime config's root_ids {root_ids} lack {ROOT_ID}")
    module = image.blob(content)
    want_module(module, want_sha, f"{image.ref} layer {content['digest']}")
    return f"2 layers {WASM_CONFIG} + {WASM_CONTENT} ({len(module)} bytes)"


CHECKS: dict[str, Callable[[Image, str], str]] = {"compat": check_compat, "wasm": check_wasm}


def check_layout(form: str, layout: Path, tag: str, want_sha: str, scratch: Path) -> str:
    """Refused, or a line saying what was verified."""
    image = Image(f"oci:{layout}:{tag}", scratch)
    want = indexed_digest(layout, tag)
    if image.digest != want:
        raise Refused(f"{image.ref}: skopeo's manifest is {image.digest}, index.json names {want}")
    return f"{form}: {image.ref} manifest {image.digest}: {CHECKS[form](image, want_sha)}, sha256 {want_sha[:12]}… = built .wasm"


def check_archive(out: Path, form: str, tag: str) -> str:
    """The oci-archive tarball beside the layout carries the same manifest."""
    archive = f"oci-archive:{out}/wechat-gate-{tag}-{form}.tar"
    layout = sha256(run(["skopeo", "inspect", "--raw", f"oci:{out / form}:{tag}"]))
    if sha256(run(["skopeo", "inspect", "--raw", archive])) != layout:
        raise Refused(f"{archive}: not the same manifest as oci:{out / form}:{tag}")
    return f"{archive}: the same manifest"


# --- the self-test: broken copies of the good layouts, each of which must be refused ---


class Mutable:
    """A copy of a layout whose tagged manifest can be rewritten (digests kept consistent)."""

    def __init__(self, src: Path, dst: Path, tag: str):
        shutil.copytree(src, dst)
        self.path, self.tag = dst, tag
        self.index = json.loads((dst / "index.json").read_text())
        self.entry = next(
            m for m in self.index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag
        )
        self.manifest = json.loads(self.get(self.entry["digest"]))

    def get(self, digest: str) -> bytes:
        return (self.path / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()

    def put(self, data: bytes) -> dict:
        (self.path / "blobs" / "sha256" / sha256(data)).write_bytes(data)
        return {"digest": "sha256:" + sha256(data), "size": len(data)}

    def save(self) -> None:
        self.entry.update(self.put(json.dumps(self.manifest).encode()))
        (self.path / "index.json").write_text(json.dumps(self.index))


def tar_of(entries: list[tuple[str, bytes]], complete: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    tar = buf.getvalue()
    return tar if complete else tar[: 512 + len(entries[0][1])]  # umoci#436: no padding, no end blocks


def with_compat_layer(tar: bytes, media_type: str = OCI_LAYER_GZIP) -> Callable[[Mutable], None]:
    def mutate(img: Mutable) -> None:
        layer = img.put(gzip.compress(tar, mtime=0))
        img.manifest["layers"][-1].update(layer, mediaType=media_type)
        config = json.loads(img.get(img.manifest["config"]["digest"]))
        config["rootfs"]["diff_ids"][-1] = "sha256:" + sha256(tar)
        img.manifest["config"].update(img.put(json.dumps(config).encode()))

    return mutate


def broken_cases(module: bytes) -> list[tuple[str, str, Callable[[Mutable], None], str]]:
    """(form, what is wrong, how to break a good copy, words the refusal must contain)."""

    def set_media(i: int, media_type: str) -> Callable[[Mutable], None]:
        return lambda img: img.manifest["layers"][i].update(mediaType=media_type)

    def drop_layer(i: int) -> Callable[[Mutable], None]:
        return lambda img: img.manifest["layers"].pop(i)

    def corrupt_blob(img: Mutable) -> None:
        path = img.path / "blobs" / "sha256" / img.manifest["layers"][-1]["digest"].split(":")[1]
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    other = module + b"\0"
    return [
        ("compat", "layer media type tar (not tar+gzip)", set_media(-1, "application/vnd.oci.image.layer.v1.tar"), "last layer"),
        ("compat", "docker layer media type", set_media(-1, "application/vnd.docker.image.rootfs.diff.tar.gzip"), "last layer"),
        ("compat", "no plugin.wasm in the tar", with_compat_layer(tar_of([("module.wasm", module)])), "not found"),
        ("compat", "plugin.wasm not at the root", with_compat_layer(tar_of([("wasm/plugin.wasm", module)])), "not a file at the root"),
        ("compat", "a tar without end blocks (umoci insert, umoci#436)", with_compat_layer(tar_of([("plugin.wasm", module)], False)), "not complete"),
        ("compat", "another module in plugin.wasm", with_compat_layer(tar_of([("plugin.wasm", other)])), "!= the built"),
        ("compat", "a layer blob that does not match its digest", corrupt_blob, "failed"),
        ("wasm", "one layer (the module only: wasm-to-oci#45)", drop_layer(0), "exactly 2"),
        ("wasm", "three layers", lambda img: img.manifest["layers"].append(dict(img.manifest["layers"][0])), "exactly 2"),
        ("wasm", "wasm-to-oci's content media type", set_media(1, "application/vnd.wasm.content.layer.v1+wasm"), "media types"),
        ("wasm", "another module in the content layer", lambda img: img.manifest["layers"][1].update(img.put(other)), "!= the built"),
        ("wasm", "not a Wasm module", lambda img: img.manifest["layers"][1].update(img.put(b"MZ" + module)), "\\0asm"),
        ("wasm", "a content blob that does not match its digest", corrupt_blob, "failed"),
    ]


def self_test(out: Path, tag: str, module: bytes, scratch: Path) -> list[str]:
    """Failures of the check itself: a broken layout it let through, or refused for another reason."""
    problems = []
    for n, (form, what, mutate, words) in enumerate(broken_cases(module)):
        img = Mutable(out / form, scratch / f"broken-{n}", tag)
        mutate(img)
        img.save()
        try:
            check_layout(form, img.path, tag, sha256(module), scratch)
            problems.append(f"self-test: {form} with {what} was accepted")
        except Refused as err:
            if words not in str(err):
                problems.append(f"self-test: {form} with {what} refused for another reason: {err}")
        shutil.rmtree(img.path)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wasm", required=True, type=Path)
    parser.add_argument("--out", default=Path("target/oci"), type=Path)
    parser.add_argument("--tag", help="the layouts' tag (default: the workspace's version in Cargo.toml)")
    args = parser.parse_args()
    if args.tag is None:
        with open(Path(__file__).resolve().parent.parent / "Cargo.toml", "rb") as cargo:
            args.tag = tomllib.load(cargo)["workspace"]["package"]["version"]
    module = args.wasm.read_bytes()
    want_sha = sha256(module)
    passed, failed = 0, []
    with tempfile.TemporaryDirectory(prefix="oci-check-") as tmp:
        scratch = Path(tmp)
        for form in CHECKS:
            try:
                print("oci-check: " + check_layout(form, args.out / form, args.tag, want_sha, scratch))
                print("oci-check: " + check_archive(args.out, form, args.tag))
                passed += 1
            except Refused as err:
                failed.append(f"{form}: {err}")
        if not failed:
            problems = self_test(args.out, args.tag, module, scratch)
            failed += problems
            cases = len(broken_cases(module))
            passed += cases - len(problems)
            print(f"oci-check: {cases - len(problems)} of {cases} broken layouts refused")
    for line in failed:
        print(f"oci-check: FAILED {line}", file=sys.stderr)
    print(f"oci-check: {passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
