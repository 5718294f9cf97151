//! Property tests of the container-create policy: whatever body a tenant
//! sends, what the proxy forwards is canonical (one key per field, so Go reads
//! exactly what serde reads here), never holds a refused setting, and always
//! carries the injected labels, cgroup parent and budget. The same for swarm
//! service specs (their task containers are created by the daemon itself).

mod support;

use dindbox::proxy::gojson::Json;
use dindbox::proxy::policy::{container_create, service_create};
use proptest::prelude::*;
use serde_json::Value;
use support::policy::box_policy;

/// Spellings dockerd folds to the same field.
fn spelling(name: &'static str) -> impl Strategy<Value = String> {
    let variants: Vec<String> = vec![
        name.to_string(),
        name.to_ascii_lowercase(),
        name.to_ascii_uppercase(),
        name.replace(['s', 'S'], "\u{017F}"),
        name.replace(['k', 'K'], "\u{212A}"),
    ];
    proptest::sample::select(variants)
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![Just(0i64), Just(-1), Just(1 << 40), any::<i64>()].prop_map(Value::from),
        prop_oneof![
            Just(""),
            Just("host"),
            Just("container:x"),
            Just("private"),
            Just("/"),
            Just("unconfined"),
            Just("bind"),
            Just("volume")
        ]
        .prop_map(Value::from),
    ]
}

fn list() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        proptest::collection::vec(
            prop_oneof![
                Just("SYS_ADMIN"),
                Just("/:/host"),
                Just("vol:/data"),
                Just("seccomp=unconfined"),
                Just("no-new-privileges"),
                Just("/anon")
            ]
            .prop_map(Value::from),
            0..3
        )
        .prop_map(Value::Array),
    ]
}

fn mount() -> impl Strategy<Value = Value> {
    (
        spelling("Type"),
        prop_oneof![Just("bind"), Just("volume"), Just("tmpfs"), Just("BIND")],
        spelling("Source"),
    )
        .prop_map(|(t, v, s)| serde_json::json!({ t: v, s: "/" }))
}

/// A HostConfig as a list of entries, duplicates and fold variants included.
fn host_config_entries() -> impl Strategy<Value = Vec<(String, Value)>> {
    let entry = prop_oneof![
        (spelling("Privileged"), scalar()),
        (spelling("CapAdd"), list()),
        (spelling("Binds"), list()),
        (spelling("SecurityOpt"), list()),
        (spelling("PidMode"), scalar()),
        (spelling("NetworkMode"), scalar()),
        (spelling("IpcMode"), scalar()),
        (spelling("CgroupParent"), scalar()),
        (spelling("Memory"), scalar()),
        (spelling("PidsLimit"), scalar()),
        (
            spelling("Mounts"),
            proptest::collection::vec(mount(), 0..3).prop_map(Value::Array)
        ),
        (spelling("Devices"), list()),
    ];
    proptest::collection::vec(entry, 0..8)
}

fn object(entries: &[(String, Value)]) -> String {
    let parts: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v))
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn body() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(host_config_entries(), 1..3),
        spelling("HostConfig"),
        proptest::option::of(proptest::collection::btree_map(
            "[a-z.]{1,8}",
            "[a-z]{0,4}",
            0..3,
        )),
        spelling("Labels"),
    )
        .prop_map(|(host_configs, hc_key, labels, labels_key)| {
            let mut entries: Vec<String> = host_configs
                .iter()
                .map(|hc| format!("{}:{}", Value::from(hc_key.as_str()), object(hc)))
                .collect();
            if let Some(labels) = labels {
                entries.push(format!(
                    "{}:{}",
                    Value::from(labels_key.as_str()),
                    serde_json::to_string(&labels).unwrap()
                ));
            }
            format!("{{{}}}", entries.join(","))
        })
}

/// Every object in the forwarded body has at most one key per Go fold group.
fn assert_canonical(value: &Json) {
    if let Json::Object(entries) = value {
        let mut folded: Vec<String> = entries
            .iter()
            .map(|(k, _)| dindbox::proxy::gojson::fold(k))
            .collect();
        folded.sort();
        let before = folded.len();
        folded.dedup();
        assert_eq!(
            before,
            folded.len(),
            "duplicate keys in {}",
            String::from_utf8_lossy(&value.to_vec())
        );
        entries.iter().for_each(|(_, v)| assert_canonical(v));
    }
    if let Json::Array(items) = value {
        items.iter().for_each(assert_canonical);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn forwarded_bodies_are_canonical_safe_and_injected(text in body()) {
        let parsed = Json::parse(text.as_bytes()).expect("generated JSON parses");
        let Ok(forwarded) = container_create(&box_policy(), parsed) else {
            return Ok(());
        };
        assert_canonical(&forwarded);
        // Canonical, so serde's map view is exactly what dockerd decodes.
        let v: Value = serde_json::from_slice(&forwarded.to_vec()).unwrap();
        let hc = &v["HostConfig"];
        prop_assert_ne!(&hc["Privileged"], &Value::Bool(true), "{}", text);
        prop_assert!(hc["CapAdd"].is_null() || hc["CapAdd"] == serde_json::json!([]), "{}", text);
        for bind in hc["Binds"].as_array().into_iter().flatten() {
            let spec = bind.as_str().unwrap();
            prop_assert!(!spec.starts_with('/') || !spec.contains(':'), "host bind {} forwarded from {}", spec, text);
        }
        for m in hc["Mounts"].as_array().into_iter().flatten() {
            prop_assert!(m["Type"] == "volume" || m["Type"] == "tmpfs", "{}", text);
        }
        for ns in ["PidMode", "NetworkMode", "IpcMode"] {
            let mode = hc[ns].as_str().unwrap_or("");
            prop_assert!(mode != "host" && !mode.starts_with("container:"), "{} {} from {}", ns, mode, text);
        }
        prop_assert!(hc["SecurityOpt"].as_array().into_iter().flatten().all(|o| o == "no-new-privileges"), "{}", text);
        prop_assert!(hc["Devices"].as_array().is_none_or(|d| d.is_empty()), "{}", text);
        prop_assert_eq!(&hc["CgroupParent"], "/dindbox");
        prop_assert!(hc["Memory"].as_i64().is_some_and(|m| m > 0 && m <= 1 << 30), "{}", text);
        prop_assert!(hc["PidsLimit"].as_i64().is_some_and(|p| p > 0 && p <= 512), "{}", text);
        prop_assert_eq!(&v["Labels"]["dindbox.tenant"], "t1");
    }
}

/// A service's `ContainerSpec` as a list of entries, duplicates and fold
/// variants included.
fn container_spec_entries() -> impl Strategy<Value = Vec<(String, Value)>> {
    let entry = prop_oneof![
        (spelling("CapabilityAdd"), list()),
        (spelling("CapabilityDrop"), list()),
        (
            spelling("Mounts"),
            proptest::collection::vec(mount(), 0..3).prop_map(Value::Array)
        ),
        (
            spelling("Sysctls"),
            prop_oneof![
                Just(Value::Null),
                Just(serde_json::json!({"kernel.core_pattern": "|/x"})),
                Just(serde_json::json!({"net.ipv4.ping_group_range": "0 0"})),
            ]
        ),
        (
            spelling("Privileges"),
            prop_oneof![
                Just(Value::Null),
                Just(serde_json::json!({"SELinuxContext": {"Disable": true}})),
                Just(serde_json::json!({"selinuxcontext": {"Type": "spc_t"}})),
                Just(serde_json::json!({"Seccomp": {"Mode": "unconfined"}})),
            ]
        ),
        (
            spelling("Labels"),
            Just(serde_json::json!({"dindbox.tenant": "me"}))
        ),
        (spelling("Image"), Just(Value::from("busybox"))),
    ];
    proptest::collection::vec(entry, 0..8)
}

fn service_body() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(container_spec_entries(), 1..3),
        spelling("ContainerSpec"),
        spelling("TaskTemplate"),
        proptest::option::of(prop_oneof![Just(0i64), Just(1 << 20), Just(1 << 40)]),
    )
        .prop_map(|(specs, spec_key, task_key, memory)| {
            let mut task: Vec<String> = specs
                .iter()
                .map(|spec| format!("{}:{}", Value::from(spec_key.as_str()), object(spec)))
                .collect();
            if let Some(memory) = memory {
                task.push(format!(
                    r#""Resources":{{"Limits":{{"MemoryBytes":{memory}}}}}"#
                ));
            }
            format!(
                r#"{{"Name":"s",{}:{{{}}}}}"#,
                Value::from(task_key.as_str()),
                task.join(",")
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn forwarded_service_specs_are_canonical_safe_and_injected(text in service_body()) {
        let parsed = Json::parse(text.as_bytes()).expect("generated JSON parses");
        let Ok(forwarded) = service_create(&box_policy(), parsed) else {
            return Ok(());
        };
        assert_canonical(&forwarded);
        let v: Value = serde_json::from_slice(&forwarded.to_vec()).unwrap();
        let spec = &v["TaskTemplate"]["ContainerSpec"];
        prop_assert!(spec["CapabilityAdd"].as_array().is_none_or(|c| c.is_empty()), "{}", text);
        for m in spec["Mounts"].as_array().into_iter().flatten() {
            prop_assert!(m["Type"] == "volume" || m["Type"] == "tmpfs", "{}", text);
        }
        prop_assert!(spec["Sysctls"].get("kernel.core_pattern").is_none(), "{}", text);
        prop_assert!(spec["Privileges"]["SELinuxContext"].is_null(), "{}", text);
        prop_assert!(spec["Privileges"].get("Seccomp").is_none(), "{}", text);
        prop_assert_eq!(&spec["Labels"]["dindbox.tenant"], "t1");
        prop_assert_eq!(&v["Labels"]["dindbox.tenant"], "t1");
        let memory = &v["TaskTemplate"]["Resources"]["Limits"]["MemoryBytes"];
        prop_assert!(memory.as_i64().is_some_and(|m| m > 0 && m <= 1 << 30), "{}", text);
    }
}
