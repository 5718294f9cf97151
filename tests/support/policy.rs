//! The policy the tests, the benches (`benches/policy.rs`) and the fuzz
//! target (`fuzz/fuzz_targets/request.rs`) check requests against: a box's,
//! with a tenant label, the cgroup parent and a memory and pids budget. The
//! benches and the fuzz crate include this file by path.

#![allow(dead_code)] // not every test binary that has `mod support;` uses it

use dindbox::proxy::policy::Policy;

/// The tenant label's key and value.
pub const TENANT: (&str, &str) = ("dindbox.tenant", "t1");
/// The memory budget: 1 GiB.
pub const MEMORY: i64 = 1 << 30;
/// The pids budget.
pub const PIDS: i64 = 512;

/// A box's policy: labels, cgroup parent and budget injected, every
/// optional family off.
pub fn box_policy() -> Policy {
    Policy {
        labels: vec![(TENANT.0.into(), TENANT.1.into())],
        cgroup_parent: Some("/dindbox".into()),
        memory: Some(MEMORY),
        pids: Some(PIDS),
        ..Policy::default()
    }
}
