//! Downloading an artifact and verifying it against the digest its producer published.

use futures::StreamExt;
use plumb_api::Digest;
use sha2::{Digest as _, Sha256};

/// Why a download was refused.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request failed or the server answered with an error status.
    #[error("fetching artifact {url}: {source}")]
    Http {
        /// The artifact URL.
        url: String,
        /// The underlying error.
        source: reqwest::Error,
    },
    /// The artifact is larger than the configured limit.
    #[error("artifact {url} exceeds the size limit of {limit} bytes")]
    TooLarge {
        /// The artifact URL.
        url: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The content does not match the published digest.
    #[error("artifact {url}: digest mismatch, expected {expected}, got {actual}")]
    DigestMismatch {
        /// The artifact URL.
        url: String,
        /// The digest from status.
        expected: Digest,
        /// The digest of what was downloaded.
        actual: Digest,
    },
}

/// The sha256 digest of `bytes`.
pub fn digest_of(bytes: &[u8]) -> Digest {
    let hex = hex::encode(Sha256::digest(bytes));
    Digest::from_sha256_hex(&hex).unwrap_or_else(|_| unreachable!())
}

/// Checks `bytes` against `expected`, returning the actual digest on mismatch.
pub fn verify_digest(bytes: &[u8], expected: &Digest) -> Result<(), Digest> {
    let actual = digest_of(bytes);
    if &actual == expected {
        Ok(())
    } else {
        Err(actual)
    }
}

/// Downloads `url` into memory, refusing more than `max_size` bytes, and returns the content
/// only when its sha256 equals `expected`. Consumers must use this (or [`verify_digest`]) before
/// unpacking anything another controller produced.
pub async fn fetch_verified(
    client: &reqwest::Client,
    url: &str,
    expected: &Digest,
    max_size: u64,
) -> Result<Vec<u8>, FetchError> {
    let http = |source| FetchError::Http {
        url: url.to_owned(),
        source,
    };
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(http)?
        .error_for_status()
        .map_err(http)?;
    let too_large = || FetchError::TooLarge {
        url: url.to_owned(),
        limit: max_size,
    };
    if resp.content_length().is_some_and(|n| n > max_size) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(http)?;
        if body.len() as u64 + chunk.len() as u64 > max_size {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    verify_digest(&body, expected).map_err(|actual| FetchError::DigestMismatch {
        url: url.to_owned(),
        expected: expected.clone(),
        actual,
    })?;
    Ok(body)
}
