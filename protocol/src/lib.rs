//! weft's pure data: everything that is named, hashed, or crosses a process boundary.
//!
//! - [`Digest`]: blake3, shown as hex ([`hex`]).
//! - [`Label`]: `@<package>//<path>:<target>` and its strict parser.
//! - The job model: [`Job`], [`Cmd`], [`Template`], [`JobId`] and the canonical encoding the id
//!   is hashed from.
//! - [`ActionResult`] and [`Tree`].
//! - [`TrustStatement`]: a node's signed word that it disowns another, or takes it back.
//! - [`wire`]: framing, the one codec function pair, the handshake and the message enums.
//!
//! Architecture invariant: this crate does no IO. It knows nothing of tokio, sockets or files,
//! and decoding bytes from outside can fail but never panic or allocate beyond
//! [`wire::MAX_FRAME`].

#![warn(missing_docs, unreachable_pub)]

mod canon;
mod digest;
pub mod hex;
mod job;
mod label;
pub mod path;
mod result;
mod tree;
mod trust;
pub mod wire;

pub use digest::{Digest, DigestHasher, DigestParseError};
pub use job::{
    Cmd, Input, Job, JobError, JobErrorKind, JobId, Segment, Template, TemplateError,
    TemplateErrorKind, Toolchain, UnknownDep,
};
pub use label::{Label, LabelError, LabelErrorKind, MAX_LABEL_LEN, PackagePath};
pub use result::{ActionResult, NodeId, OutputFile, Signature};
pub use tree::{Tree, TreeEntry, TreeError, TreeNode};
pub use trust::{TrustStatement, Verdict};
