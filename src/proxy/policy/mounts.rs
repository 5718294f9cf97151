//! The rules for a `Mounts` entry's options (`mount.Mount`, Engine API 1.42
//! to 1.55): each mount type's own options object, a volume's or an image's
//! `Subpath`, a tmpfs mount's `Options`, and image mounts. Host binds and the
//! volume driver options are refused in `container::check_mounts_at`, which
//! calls these.

#![forbid(unsafe_code)]

use super::value::{array, string};
use super::Reject;
use crate::proxy::gojson::{get, Json};
use crate::proxy::gopath::clean_path;

/// The options object that belongs to each mount type. dockerd refuses the
/// others from API 1.42 and drops `VolumeOptions` and `TmpfsOptions` of
/// another type below it (`postContainersCreate`), but never drops
/// `BindOptions` (`ReadOnlyNonRecursive`, `CreateMountpoint`, propagation):
/// only the mount's own object is allowed, at every version.
const OPTIONS: [(&str, &str); 5] = [
    ("bind", "BindOptions"),
    ("volume", "VolumeOptions"),
    ("image", "ImageOptions"),
    ("tmpfs", "TmpfsOptions"),
    ("cluster", "ClusterOptions"),
];

/// Refuses an options object of another mount type (`null` is no object).
pub(super) fn check_own_options(
    mount: &[(String, Json)],
    mount_type: &str,
    path: &str,
) -> Result<(), Reject> {
    for (owner_type, name) in OPTIONS {
        if owner_type == mount_type || matches!(get(mount, name), None | Some(Json::Null)) {
            continue;
        }
        return Err(Reject::forbidden(
            "mount-options",
            &format!("{name} on a {mount_type} mount"),
            format!("{path}.{name} belongs to {owner_type} mounts"),
        ));
    }
    Ok(())
}

/// `VolumeOptions.Subpath` (API 1.45): dockerd mounts that path of the volume
/// (`safepath.Join`, which also refuses symlinks out of it) and refuses a
/// subpath on an anonymous volume.
pub(super) fn check_volume_subpath(mount: &[(String, Json)], path: &str) -> Result<(), Reject> {
    let Some(Json::Object(options)) = get(mount, "VolumeOptions") else {
        return Ok(());
    };
    let at = format!("{path}.VolumeOptions.Subpath");
    let subpath = string(options, "Subpath", &at)?;
    if subpath.is_empty() {
        return Ok(());
    }
    if string(mount, "Source", &format!("{path}.Source"))?.is_empty() {
        return Err(Reject::forbidden(
            "mount-subpath",
            "a subpath of an anonymous volume",
            format!("{at} needs a named volume as the Source"),
        ));
    }
    check_subpath(subpath, &at)
}

/// An image mount (`Type: "image"`, API 1.48): dockerd mounts the local
/// image named by `Source` read-only (it never pulls one). Images are shared
/// between the tenants of a daemon already (any of them can run it), so any
/// image may be mounted; `ImageOptions.Subpath` must stay inside it.
pub(super) fn check_image_mount(mount: &[(String, Json)], path: &str) -> Result<(), Reject> {
    let Some(Json::Object(options)) = get(mount, "ImageOptions") else {
        return Ok(());
    };
    let at = format!("{path}.ImageOptions.Subpath");
    match string(options, "Subpath", &at)? {
        "" => Ok(()),
        subpath => check_subpath(subpath, &at),
    }
}

/// A subpath as dockerd's mount parser judges it (Go's `filepath.IsLocal` on
/// Linux): relative, and still inside once cleaned (no `..` out of it).
fn check_subpath(subpath: &str, at: &str) -> Result<(), Reject> {
    let cleaned = clean_path(subpath);
    if subpath.starts_with('/') || cleaned == ".." || cleaned.starts_with("../") {
        return Err(Reject::forbidden(
            "mount-subpath",
            &format!("subpath {subpath:?}"),
            format!(
                "{at} must be a path inside the mounted volume or image (it cleans to {cleaned:?})"
            ),
        ));
    }
    Ok(())
}

/// The tmpfs mount options dockerd accepts (`validTmpfsOptions`, honoured at
/// every API version though documented from 1.46): `exec` and `noexec`, each
/// alone. An executable tmpfs gives nothing the container's writable root
/// filesystem does not; anything dockerd would refuse is refused here too.
const TMPFS_OPTIONS: &[&str] = &["exec", "noexec"];

/// `TmpfsOptions.Options`: `[["exec"]]` or `[["noexec"]]`. dockerd also takes
/// `["exec", value]`, which it writes as `exec=value`: no mount option has
/// that form, so it is refused.
pub(super) fn check_tmpfs_options(mount: &[(String, Json)], path: &str) -> Result<(), Reject> {
    let Some(Json::Object(options)) = get(mount, "TmpfsOptions") else {
        return Ok(());
    };
    for (i, option) in array(options, "Options").iter().enumerate() {
        let plain = match option {
            Json::Array(words) => match words.as_slice() {
                [Json::String(word)] => TMPFS_OPTIONS.contains(&word.as_str()),
                _ => false,
            },
            _ => false,
        };
        if !plain {
            return Err(Reject::forbidden(
                "tmpfs-options",
                &format!("tmpfs option {}", String::from_utf8_lossy(&option.to_vec())),
                format!("{path}.TmpfsOptions.Options[{i}] must be [\"exec\"] or [\"noexec\"]"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(text: &str) -> Vec<(String, Json)> {
        match Json::parse(text.as_bytes()).unwrap() {
            Json::Object(fields) => fields,
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn subpaths_stay_inside_as_go_s_is_local_reads_them() {
        for inside in ["data", "a/b", "a/../b", "./a", "a//b/", ".", "..a", "a/.."] {
            assert!(check_subpath(inside, "Subpath").is_ok(), "{inside}");
        }
        for outside in [
            "/etc",
            "..",
            "../x",
            "a/../../x",
            "./../x",
            "a/b/../../..",
            "//x",
        ] {
            let reject = check_subpath(outside, "Subpath").unwrap_err();
            assert_eq!(reject.rule, "mount-subpath", "{outside}");
        }
    }

    #[test]
    fn a_volume_subpath_needs_a_named_volume() {
        let named = mount(r#"{"Source":"v","VolumeOptions":{"Subpath":"app"}}"#);
        assert!(check_volume_subpath(&named, "Mounts[0]").is_ok());
        let anonymous = mount(r#"{"VolumeOptions":{"Subpath":"app"}}"#);
        let reject = check_volume_subpath(&anonymous, "Mounts[0]").unwrap_err();
        assert_eq!(reject.rule, "mount-subpath");
        let escape = mount(r#"{"Source":"v","VolumeOptions":{"Subpath":"../../etc"}}"#);
        assert_eq!(
            check_volume_subpath(&escape, "Mounts[0]")
                .unwrap_err()
                .message,
            r#"dindbox: subpath "../../etc" is not allowed: Mounts[0].VolumeOptions.Subpath must be a path inside the mounted volume or image (it cleans to "../../etc")"#
        );
    }

    #[test]
    fn only_exec_and_noexec_tmpfs_options_pass() {
        for ok in [
            r#"{}"#,
            r#"{"TmpfsOptions":null}"#,
            r#"{"TmpfsOptions":{"Options":null}}"#,
            r#"{"TmpfsOptions":{"Options":[["exec"]]}}"#,
            r#"{"TmpfsOptions":{"Options":[["noexec"],["exec"]]}}"#,
        ] {
            assert!(check_tmpfs_options(&mount(ok), "m").is_ok(), "{ok}");
        }
        for refused in [
            r#"{"TmpfsOptions":{"Options":[["dev"]]}}"#,
            r#"{"TmpfsOptions":{"Options":[["suid"]]}}"#,
            r#"{"TmpfsOptions":{"Options":[["exec","1"]]}}"#,
            r#"{"TmpfsOptions":{"Options":[[]]}}"#,
            r#"{"TmpfsOptions":{"Options":[null]}}"#,
            r#"{"TmpfsOptions":{"Options":[["EXEC"]]}}"#,
            r#"{"TmpfsOptions":{"Options":["exec"]}}"#,
        ] {
            let reject = check_tmpfs_options(&mount(refused), "m").unwrap_err();
            assert_eq!(reject.rule, "tmpfs-options", "{refused}");
        }
    }

    #[test]
    fn options_of_another_mount_type_are_refused() {
        let with = |options: &str| mount(&format!(r#"{{"Target":"/t",{options}}}"#));
        assert!(check_own_options(&with(r#""TmpfsOptions":{}"#), "tmpfs", "m").is_ok());
        assert!(check_own_options(&with(r#""BindOptions":null"#), "tmpfs", "m").is_ok());
        for (options, mount_type) in [
            (r#""BindOptions":{"CreateMountpoint":true}"#, "volume"),
            (r#""BindOptions":{"ReadOnlyNonRecursive":true}"#, "tmpfs"),
            (r#""BindOptions":{"Propagation":"rshared"}"#, "image"),
            (r#""VolumeOptions":{"Subpath":"x"}"#, "image"),
            (r#""TmpfsOptions":{}"#, "volume"),
            (r#""ImageOptions":{}"#, "volume"),
            (r#""ClusterOptions":{}"#, "volume"),
        ] {
            let reject = check_own_options(&with(options), mount_type, "m").unwrap_err();
            assert_eq!(reject.rule, "mount-options", "{options} on {mount_type}");
        }
    }
}
