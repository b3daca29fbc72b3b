"""The on-disk layout: Arrow shards, manifests and atomic writes. No other package knows file names.

    out = StageOutput(cfg, cfg.out, inputs={"docs": upstream})
    if (done := out.up_to_date()) is not None:
        return done
    for i, table in enumerate(tables):
        if not out.has_shard(shard_name(i)):
            out.write_shard(shard_name(i), table, tokens=...)
    return out.finish(stats={...})
"""

from pretrain_cli.store.files import atomic_write_bytes, atomic_write_json, file_sha256
from pretrain_cli.store.manifest import SCHEMA_VERSION, Manifest, ShardInfo, files_input, read_manifest
from pretrain_cli.store.output import StageOutput, shard_name
from pretrain_cli.store.shards import iter_shards, list_parts, read_shard

__all__ = [
    "SCHEMA_VERSION", "Manifest", "ShardInfo", "StageOutput", "atomic_write_bytes",
    "atomic_write_json", "file_sha256", "files_input", "iter_shards", "list_parts", "read_manifest",
    "read_shard", "shard_name",
]
