//! The rendered artifact: gzip of multi-document YAML, named by its digest.

use std::io::{self, Write};
use std::sync::{Mutex, PoisonError};

use flate2::write::DeflateEncoder;
use flate2::{Compression, Crc};
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
    let bytes = gzip(yaml.as_bytes())?;
    Ok(Rendered {
        digest: digest_of(&bytes),
        bytes,
        objects: objects.len(),
    })
}

/// The gzip header flate2's `GzEncoder` writes at the default level: no file name, no comment, a
/// zero mtime (so the bytes are reproducible), no extra flags, operating system "unknown".
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// The deflate state every render's artifact is compressed with, reset for each. A state is some
/// 260 KiB (zlib's window and hash chains, mapped from the kernel); one made per render, as
/// `GzEncoder` does, put one in memory for each render packing at once (three at the peak of
/// 1000 Syncs rendered by 4 workers, measured with heaptrack). Packing a render's YAML takes
/// microseconds, so the workers take turns.
static DEFLATE: Mutex<Option<DeflateEncoder<Vec<u8>>>> = Mutex::new(None);

/// The largest YAML packed with the [shared state](DEFLATE). A larger render (up to the
/// `max-rendered-size` limit, 64 MiB by default, which a tenant's repository can reach) takes
/// a state of its own, so it never holds the others' packing back for the second or more its
/// deflate takes.
const SHARED_UP_TO: usize = 1 << 20;

/// `data` as gzip, byte for byte what `GzEncoder` at the default level writes: artifacts are
/// named by the digest of these bytes, so a change of encoder must not change them. The deflate
/// stream goes through flate2's own writer, as `GzEncoder`'s does (its output depends on how the
/// writer feeds the compressor); the gzip header and trailer are written around it here.
fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let deflated = if data.len() > SHARED_UP_TO {
        deflate(
            &mut DeflateEncoder::new(Vec::new(), Compression::default()),
            data,
        )
    } else {
        let mut state = DEFLATE.lock().unwrap_or_else(PoisonError::into_inner);
        let encoder =
            state.get_or_insert_with(|| DeflateEncoder::new(Vec::new(), Compression::default()));
        let deflated = deflate(encoder, data);
        if deflated.is_err() {
            // A state left mid-stream is not used again.
            *state = None;
        }
        deflated
    };
    let mut out = deflated?;
    let mut crc = Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&crc.amount().to_le_bytes());
    Ok(out)
}

/// The gzip header and `data` deflated with `encoder`, reset first.
fn deflate(encoder: &mut DeflateEncoder<Vec<u8>>, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 4 + 64);
    out.extend_from_slice(&GZIP_HEADER);
    // Resetting starts a fresh stream into `out` (the writer it hands back is the last use's,
    // emptied when its bytes were taken).
    encoder.reset(out)?;
    encoder.write_all(data)?;
    encoder.try_finish()?;
    Ok(std::mem::take(encoder.get_mut()))
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

    /// What `GzEncoder` at the default level writes (how artifacts were packed before the state
    /// was shared): the digests of renders must not change with the encoder.
    fn gz_encoder(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn the_shared_state_writes_the_bytes_gz_encoder_writes() {
        // Empty, small, one byte repeated, and text past GzEncoder's 32 KiB buffer and zlib's
        // window, which varies in a way deflate cannot shorten much.
        let mut varied = String::new();
        let mut x: u64 = 7;
        while varied.len() < 300_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            varied.push_str(&format!("key-{}: value {:x}\n", x % 977, x >> 20));
        }
        let varied = varied.into_bytes();
        // Past SHARED_UP_TO: packed with a state of its own, the same bytes.
        let large: Vec<u8> = varied
            .iter()
            .copied()
            .cycle()
            .take(SHARED_UP_TO + 4096)
            .collect();
        let inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"apiVersion: v1\nkind: ConfigMap\n".to_vec(),
            vec![b'a'; 100_000],
            varied,
            large,
        ];
        // Twice over: a reused state writes what a fresh one writes.
        for round in 0..2 {
            for data in &inputs {
                let ours = gzip(data).unwrap();
                assert_eq!(
                    ours,
                    gz_encoder(data),
                    "round {round}, {} bytes",
                    data.len()
                );
                let mut back = Vec::new();
                use std::io::Read;
                flate2::read::GzDecoder::new(ours.as_slice())
                    .read_to_end(&mut back)
                    .unwrap();
                assert_eq!(&back, data);
            }
        }
    }

    #[test]
    fn a_large_render_packs_without_waiting_for_the_shared_state() {
        // Another render holds the shared state; a render past the limit packs all the same.
        let held = DEFLATE.lock().unwrap_or_else(PoisonError::into_inner);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(gzip(&vec![b'x'; SHARED_UP_TO + 1]).is_ok());
        });
        let packed = rx.recv_timeout(std::time::Duration::from_secs(60));
        drop(held);
        assert_eq!(packed, Ok(true), "packed while the shared state was held");
    }
}
