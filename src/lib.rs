//! dindbox: Docker-in-Docker made safe and boring.
//!
//! One binary, several roles:
//! - [`init`]: PID 1 of a privileged dind image (mounts, cgroups, supervised inner dockerd, reaping);
//! - [`proxy`]: the validating Docker Engine API proxy in front of the inner dockerd;
//! - [`health`]: the health probe used by the image's HEALTHCHECK;
//! - [`graphdriver_server`]: the host-side graphdriver plugin server (`graphdriver-server`);
//! - [`tenant`]: host-side tenant lifecycle (`dindbox tenant create|list|rm|logs`);
//! - [`bytesize`]: the one grammar of byte sizes (`2g`, `512m`) every flag and setting uses;
//! - [`serve`]: the one HTTP serving loop of the proxy, the graphdriver server and the metrics endpoint;
//! - [`engine`]: the one Docker Engine API client (unix socket) all of them talk to a dockerd with;
//! - [`tls`]: `DOCKER_TLS_CERTDIR` certificates and the proxy's rustls configuration.

pub mod bytesize;
pub mod engine;
pub mod graphdriver_server;
pub mod health;
pub mod init;
pub mod logging;
pub mod metrics;
pub mod mountinfo;
pub mod proxy;
pub mod serve;
pub mod snapshotter_server;
pub mod tenant;
pub mod tls;
