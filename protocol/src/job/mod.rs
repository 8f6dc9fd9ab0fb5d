//! The job model: [`Job`], its [`Cmd`]s and [`Template`]s, and its [`JobId`].

mod id;
mod model;
mod template;

pub use id::JobId;
pub use model::{Cmd, Input, Job, JobError, JobErrorKind, Toolchain};
pub use template::{Segment, Template, TemplateError, TemplateErrorKind, UnknownDep};
