//! Shared by the integration tests: `mod support;` in a test file.

pub mod dockerd;
pub mod policy;
pub mod proxy;
