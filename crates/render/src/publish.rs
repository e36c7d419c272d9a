//! The rendered artifact: gzip of multi-document YAML, named by its digest.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use plumb_api::Digest;
use plumb_artifact::fetch::digest_of;
use serde_json::Value;

use crate::objects::to_yaml_stream;

/// A rendered artifact in memory, ready to store.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The gzip bytes.
    pub bytes: Vec<u8>,
    /// Their sha256.
    pub digest: Digest,
    /// How many objects it holds.
    pub objects: usize,
}

impl Rendered {
    /// The file name under the Sync's artifact directory: `<digest hex>.yaml.gz`.
    pub fn file_name(&self) -> String {
        format!("{}.yaml.gz", self.digest.hex())
    }
}

/// Packs `objects` (already in apply order) as a deterministic gzip of multi-document YAML: the
/// same objects always give the same digest.
pub fn pack(objects: &[Value]) -> Result<Rendered, std::io::Error> {
    let yaml = to_yaml_stream(objects).map_err(std::io::Error::other)?;
    // flate2 writes no file name and a zero mtime unless asked, so the bytes are reproducible.
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(yaml.as_bytes())?;
    let bytes = gz.finish()?;
    Ok(Rendered {
        digest: digest_of(&bytes),
        bytes,
        objects: objects.len(),
    })
}

/// Unpacks a rendered artifact back into objects.
pub fn unpack(bytes: &[u8]) -> Result<Vec<Value>, std::io::Error> {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes).read_to_string(&mut text)?;
    crate::engine::parse_documents(&text).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn packing_is_deterministic_and_round_trips() {
        let objs = vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "a"}}),
        ];
        let a = pack(&objs).unwrap();
        let b = pack(&objs).unwrap();
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.objects, 2);
        assert!(a.file_name().ends_with(".yaml.gz"));
        assert_eq!(unpack(&a.bytes).unwrap(), objs);
    }
}
