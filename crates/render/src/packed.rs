//! How a [`SyncView`](crate::sync_view::SyncView) holds what a render reads of its Sync: the
//! JSON, deflated against a preset dictionary of what every Sync's JSON spells alike.
//!
//! A Sync's JSON (labels, spec, the render's part of the status) is some 1.2 KB, mostly field
//! names, condition words and the prefixes of revisions, digests and URLs: deflate alone halves
//! it (it has no earlier text to refer to but the object's own), with those strings preset as
//! its dictionary it keeps in about 300 bytes. Packing is exact: what a reconcile reads back is
//! the JSON, byte for byte.

use std::io;
use std::sync::{LazyLock, Mutex, PoisonError};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// What Sync JSON usually holds, in the order serde writes it (the end, which deflate reaches
/// most cheaply, nearest to the status, which is written last). Only a hint: any text packs.
const DICTIONARY: &[u8] = br#"{"apiVersion":"sync.plumb.dev/v1","kind":"Sync","metadata":{"annotations":{"plumb.dev/requested-at":""},"labels":{"app.kubernetes.io/name":"","plumb.dev/shard":""}},"spec":{"sourceRef":{"kind":"GitRepository","name":"","namespace":""},"path":"./","interval":"10m","retryInterval":"1m","timeout":"5m","prune":true,"wait":true,"targetNamespace":"","dependsOn":[],"serviceAccountName":"","images":[{"name":"","newName":"","newTag":""}],"patches":[{"patch":"","target":{"kind":""}}],"substitute":{"":""},"selfHeal":true,"substituteFrom":[{"kind":"ConfigMap","name":""}],"components":[]},"status":{"conditions":[{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"rendered 4 objects from main@sha1:","observedGeneration":1,"reason":"ReconciliationSucceeded","status":"True","type":"Rendered"}],"render":{"observedGeneration":1,"sourceRevision":"main@sha1:","sourceDigest":"sha256:","artifact":{"revision":"main@sha1:","digest":"sha256:","url":"http://127.0.0.1:9091/sync/","size":1,"lastUpdateTime":"2026-01-01T00:00:00.000000Z"},"objects":4},"lastAttemptedRevision":"main@sha1:"}}"#;

/// The deflate window: 4 KiB covers a Sync's JSON and the dictionary; the one compressor's
/// state stays some 150 KiB.
const WINDOW_BITS: u8 = 12;

/// The first byte of a packed text: the JSON follows deflated.
const DEFLATED: u8 = 1;
/// The first byte of a packed text: the JSON follows as it is (should the compressor fail,
/// which it does not on memory it was given: a view never loses its Sync).
const STORED: u8 = 0;

/// The process's compressor, its state reused for every Sync.
static COMPRESS: LazyLock<Mutex<Compress>> = LazyLock::new(|| {
    Mutex::new(Compress::new_with_window_bits(
        Compression::default(),
        false,
        WINDOW_BITS,
    ))
});

/// `json`, packed.
pub fn pack(json: &[u8]) -> Box<[u8]> {
    deflate(json).unwrap_or_else(|| [&[STORED], json].concat().into_boxed_slice())
}

fn deflate(json: &[u8]) -> Option<Box<[u8]>> {
    let mut c = COMPRESS.lock().unwrap_or_else(PoisonError::into_inner);
    c.reset();
    c.set_dictionary(DICTIONARY).ok()?;
    let mut out = Vec::with_capacity(json.len() / 3 + 64);
    out.push(DEFLATED);
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity());
        }
        let read = usize::try_from(c.total_in()).ok()?;
        match c
            .compress_vec(json.get(read..)?, &mut out, FlushCompress::Finish)
            .ok()?
        {
            Status::StreamEnd => return Some(out.into_boxed_slice()),
            Status::Ok | Status::BufError => {}
        }
    }
}

/// The JSON `packed` holds.
pub fn unpack(packed: &[u8]) -> io::Result<Vec<u8>> {
    match packed.split_first() {
        Some((&STORED, json)) => Ok(json.to_vec()),
        Some((&DEFLATED, deflated)) => inflate(deflated),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a packed text",
        )),
    }
}

fn inflate(deflated: &[u8]) -> io::Result<Vec<u8>> {
    let mut d = Decompress::new_with_window_bits(false, WINDOW_BITS);
    d.set_dictionary(DICTIONARY).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(deflated.len() * 4);
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity());
        }
        let (read, written) = (d.total_in(), out.len());
        let rest = usize::try_from(read)
            .ok()
            .and_then(|r| deflated.get(r..))
            .unwrap_or_default();
        match d
            .decompress_vec(rest, &mut out, FlushDecompress::Finish)
            .map_err(io::Error::other)?
        {
            Status::StreamEnd => return Ok(out),
            Status::Ok | Status::BufError if d.total_in() == read && out.len() == written => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "packed text cut short",
                ));
            }
            Status::Ok | Status::BufError => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_text_packs_and_unpacks_exactly() {
        let sync = br#"{"apiVersion":"sync.plumb.dev/v1","kind":"Sync","metadata":{"labels":{"team":"a"}},"spec":{"sourceRef":{"kind":"GitRepository","name":"app"},"path":"./fleet"}}"#;
        let big: Vec<u8> = (0..20_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for text in [&sync[..], b"", b"not json at all", &big] {
            let packed = pack(text);
            assert_eq!(packed[0], DEFLATED);
            assert_eq!(unpack(&packed).unwrap(), text);
        }
        assert!(pack(sync).len() < sync.len() / 2, "the dictionary pays");
    }

    #[test]
    fn a_stored_text_unpacks_and_a_broken_one_fails() {
        let stored = [&[STORED], &b"{}"[..]].concat();
        assert_eq!(unpack(&stored).unwrap(), b"{}");
        let packed = pack(br#"{"spec":{"path":"./fleet"}}"#);
        assert!(unpack(&packed[..packed.len() / 2]).is_err(), "cut short");
        assert!(unpack(&[7, 1, 2]).is_err(), "unknown tag");
        assert!(unpack(&[]).is_err());
    }
}
