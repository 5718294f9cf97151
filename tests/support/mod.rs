//! Shared by the integration tests: `mod support;` in a test file.

pub mod dockerd;
pub mod host_server;
pub mod policy;
pub mod proxy;
