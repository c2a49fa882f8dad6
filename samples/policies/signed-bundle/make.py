#!/usr/bin/env python3
"""Writes the signed sample policy bundle (an OCI image layout) beside this script, byte for byte the same on every run.

The layout holds a kars EgressAllowlist v1 artifact (as `oras push --artifact-type
application/vnd.kars.egress-allowlist.v1+yaml` writes it) and its cosign signature under the legacy
`sha256-<hex>.sig` tag (a simple-signing payload, as `cosign sign --key` writes it, without a transparency-log
entry). The key is Ed25519 with a FIXED, PUBLISHED seed: Ed25519 signatures are deterministic, so the output never
changes. It is a sample key: never trust it for anything real.

    python3 samples/policies/signed-bundle/make.py      # needs the `cryptography` package
    kars-policy eval --policy samples/policies/signed-bundle/layout \
        --key samples/policies/signed-bundle/sample-signing.pub --insecure-ignore-tlog api.github.com
"""
import base64
import hashlib
import json
import os
import shutil

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HERE = os.path.dirname(os.path.abspath(__file__))
LAYOUT = os.path.join(HERE, "layout")
MEDIA_TYPE = "application/vnd.kars.egress-allowlist.v1+yaml"
SEED = hashlib.sha256(b"kars-policy sample signing key: never trust it").digest()

DOCUMENT = (
    "apiVersion: kars.dev/v1alpha1\n"
    "kind: EgressAllowlist\n"
    "metadata:\n"
    "  name: sample-sandbox\n"
    "  generation: 1\n"
    "spec:\n"
    "  endpoints:\n"
    "    - host: api.github.com\n"
    "      port: 443\n"
    "    - host: pypi.org\n"
    "      port: 443\n"
).encode()


def dumps(value):
    return json.dumps(value, separators=(",", ":"), sort_keys=False).encode()


def put(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(LAYOUT, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def main():
    shutil.rmtree(LAYOUT, ignore_errors=True)
    os.makedirs(os.path.join(LAYOUT, "blobs", "sha256"))
    with open(os.path.join(LAYOUT, "oci-layout"), "wb") as f:
        f.write(dumps({"imageLayoutVersion": "1.0.0"}))

    empty = put(b"{}")
    layer = put(DOCUMENT)
    manifest_bytes = dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": MEDIA_TYPE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", **empty},
        "layers": [{"mediaType": MEDIA_TYPE, **layer, "annotations": {"org.opencontainers.image.title": "allowlist.yaml"}}],
    })
    manifest = put(manifest_bytes)

    key = Ed25519PrivateKey.from_private_bytes(SEED)
    payload = dumps({
        "critical": {
            "identity": {"docker-reference": "registry.example/policies/sample-sandbox"},
            "image": {"docker-manifest-digest": manifest["digest"]},
            "type": "cosign container image signature",
        },
        "optional": None,
    })
    signature = base64.b64encode(key.sign(payload)).decode()
    payload_desc = put(payload)
    sig_manifest = put(dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **empty},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", **payload_desc,
                    "annotations": {"dev.cosignproject.cosign/signature": signature}}],
    }))

    index = dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest, "artifactType": MEDIA_TYPE,
             "annotations": {"org.opencontainers.image.ref.name": "sample-sandbox"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", **sig_manifest,
             "annotations": {"org.opencontainers.image.ref.name": "sha256-" + manifest["digest"][7:] + ".sig"}},
        ],
    })
    with open(os.path.join(LAYOUT, "index.json"), "wb") as f:
        f.write(index)

    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with open(os.path.join(HERE, "sample-signing.pub"), "wb") as f:
        f.write(public)
    print(manifest["digest"])


if __name__ == "__main__":
    main()
