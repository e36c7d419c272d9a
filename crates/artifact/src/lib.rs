//! Artifacts: the files plumb controllers hand to each other, named by URL and verified by digest.
//!
//! - [`archive`]: a deterministic tar.gz of a file tree (sorted entries, zeroed times and owners,
//!   fixed modes), so the same tree always has the same digest, deflated in runs that the next
//!   archive of a mostly equal tree copies; gitignore-style [`IgnoreRules`].
//! - [`storage`]: the on-disk store `<root>/<kind>/<namespace>/<name>/<file>`, written atomically
//!   (temp file, fsync, rename), with garbage collection of old files per object.
//! - [`serve`]: the HTTP file server, `GET /<kind>/<namespace>/<name>/<file>`.
//! - [`auth`]: the bearer token the controllers share, so only they can download artifacts.
//! - [`fetch`]: download with a size limit and digest verification.
//! - [`unpack`]: extraction that refuses absolute paths, `..`, links leaving the root and
//!   archives over a size limit, listing (and hashing) the tree before writing it, and writing
//!   over a tree unpacked before only what differs (from the content kept while listing).

pub mod archive;
pub mod auth;
pub mod fetch;
pub mod serve;
pub mod storage;
pub mod unpack;

pub use archive::{FileEntry, IgnoreRules, Runs, Written, write_tar_gz, write_tar_gz_reusing};
pub use auth::{ArtifactToken, TokenSecret};
pub use fetch::{FetchError, fetch_verified, verify_digest};
pub use storage::{ArtifactKey, Storage, StorageError, Stored};
pub use unpack::{
    Kept, Listing, Node, UnpackError, UnpackLimits, Unpacked, list_tar_gz, list_tar_gz_keeping,
    unpack_listed, unpack_listed_kept, unpack_tar_gz,
};
