//! `DINDBOX_CONTAINERD_STORE`: which image store the inner dockerd keeps its
//! images in. `1` starts it with `--feature=containerd-snapshotter=true` (the
//! containerd image store: images are containerd images, their ids the
//! digests of their manifests or indexes, layers in containerd's overlayfs
//! snapshotter); `0` with `=false` (the classic graphdriver store, also on
//! dockerd 29, where the containerd store is the default for a new data
//! root); unset leaves dockerd's default.
//!
//! dockerd keeps the two stores apart: images loaded in one mode are not
//! seen in the other.
//!
//! Two ways it breaks, refused before dockerd starts:
//! - dockerd older than 24.0 has no such feature and ignores the flag;
//! - containerd's overlayfs snapshotter cannot mount on overlayfs, and does
//!   not fall back to another driver as the classic store does: every run
//!   and build fails with `mount ... fstype: overlay ... invalid argument`.
//!   The data root (dockerd runs the containerd under `<data-root>/containerd`)
//!   must be a volume, as the image's `VOLUME /var/lib/docker` makes it.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// The variable.
pub const ENV: &str = "DINDBOX_CONTAINERD_STORE";
/// dockerd's feature name (`--feature NAME[=BOOL]`, daemon.json `features`).
pub const FEATURE: &str = "containerd-snapshotter";
/// The first dockerd with the feature.
pub const MIN_VERSION: (u32, u32) = (24, 0);

/// Why the containerd image store cannot be set up as asked.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImageStoreError {
    #[error("{ENV}={0:?}: expected 1 (the containerd image store) or 0 (the classic store)")]
    BadSwitch(String),
    #[error(
        "{ENV} is set, and the dockerd arguments already set --feature {FEATURE}={0}: \
         keep one of them"
    )]
    SetTwice(bool),
    #[error(
        "{ENV}=1 asks for the containerd image store, but the inner dockerd is {}.{}, \
         which has no such feature (it came in {}.{}) and would keep the classic store: use \
         the default dindbox image (dockerd 28) or unset {ENV}",
        .0.0, .0.1, MIN_VERSION.0, MIN_VERSION.1
    )]
    DockerdTooOld((u32, u32)),
    #[error(
        "the containerd image store is on, but the data root {dr} is on overlayfs: containerd's \
         overlayfs snapshotter cannot mount there (every run and build would fail with `invalid \
         argument`). Give it a volume: docker run -v NAME:{dr} ..., or unset {ENV}",
        dr = .0.display()
    )]
    DataRootOnOverlayfs(PathBuf),
}

/// The switch: `Some(true)` on, `Some(false)` off, `None` dockerd's default.
pub fn parse(value: Option<&str>) -> Result<Option<bool>, ImageStoreError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some("1" | "true" | "on" | "yes") => Ok(Some(true)),
        Some("0" | "false" | "off" | "no") => Ok(Some(false)),
        Some(other) => Err(ImageStoreError::BadSwitch(other.to_string())),
    }
}

/// What dockerd's arguments say about the feature, as dockerd reads them
/// (`--feature NAME` or `--feature=NAME[=BOOL]`, Go's `strconv.ParseBool`;
/// the last one wins). `None` when they do not name it.
pub fn in_args(args: &[String]) -> Option<bool> {
    let mut found = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let value = match arg.strip_prefix("--feature=") {
            Some(value) => value,
            None if arg == "--feature" => match iter.next() {
                Some(value) => value,
                None => continue,
            },
            None => continue,
        };
        let (name, set) = value.split_once('=').unwrap_or((value, "true"));
        if name == FEATURE {
            found = go_parse_bool(set).or(found);
        }
    }
    found
}

/// Go's `strconv.ParseBool`.
fn go_parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Appends the flag for `on`, unless the arguments already name the feature
/// (dockerd would take the last one silently).
pub fn add_dockerd_args(args: &mut Vec<String>, on: bool) -> Result<(), ImageStoreError> {
    if let Some(set) = in_args(args) {
        return Err(ImageStoreError::SetTwice(set));
    }
    args.push(format!("--feature={FEATURE}={on}"));
    Ok(())
}

/// The containerd image store needs dockerd 24.0 or later.
pub fn version_gate(version: (u32, u32)) -> Result<(), ImageStoreError> {
    if version >= MIN_VERSION {
        return Ok(());
    }
    Err(ImageStoreError::DockerdTooOld(version))
}

/// Refuses a data root on overlayfs, where containerd's snapshotter cannot
/// mount (`on_overlayfs`: [`super::mounts::on_overlayfs`]).
pub fn check_data_root(data_root: &Path, on_overlayfs: bool) -> Result<(), ImageStoreError> {
    if !on_overlayfs {
        return Ok(());
    }
    Err(ImageStoreError::DataRootOnOverlayfs(
        data_root.to_path_buf(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_switch_reads_one_zero_or_nothing() {
        assert_eq!(parse(None), Ok(None));
        assert_eq!(parse(Some(" ")), Ok(None));
        assert_eq!(parse(Some("1")), Ok(Some(true)));
        assert_eq!(parse(Some("true")), Ok(Some(true)));
        assert_eq!(parse(Some("0")), Ok(Some(false)));
        assert_eq!(parse(Some("off")), Ok(Some(false)));
        let err = parse(Some("containerd")).unwrap_err().to_string();
        assert!(err.contains(ENV) && err.contains("expected 1"), "{err}");
    }

    #[test]
    fn the_feature_is_read_from_the_args_as_dockerd_reads_it() {
        assert_eq!(in_args(&args(&["--host=unix:///x"])), None);
        assert_eq!(
            in_args(&args(&["--feature", "containerd-snapshotter"])),
            Some(true)
        );
        assert_eq!(
            in_args(&args(&["--feature=containerd-snapshotter=F"])),
            Some(false)
        );
        assert_eq!(
            in_args(&args(&[
                "--feature=containerd-snapshotter=true",
                "--feature",
                "containerd-snapshotter=0"
            ])),
            Some(false)
        );
        assert_eq!(in_args(&args(&["--feature=cdi=true"])), None);
        // Not a flag dockerd takes: a value of another flag.
        assert_eq!(in_args(&args(&["--label", "containerd-snapshotter"])), None);
    }

    #[test]
    fn the_flag_is_added_once() {
        let mut a = args(&["--host=unix:///x"]);
        add_dockerd_args(&mut a, true).unwrap();
        assert_eq!(a[1], "--feature=containerd-snapshotter=true");
        let mut b = args(&["--host=unix:///x"]);
        add_dockerd_args(&mut b, false).unwrap();
        assert_eq!(b[1], "--feature=containerd-snapshotter=false");
        let err = add_dockerd_args(&mut a, false).unwrap_err().to_string();
        assert!(
            err.contains("already set --feature containerd-snapshotter=true"),
            "{err}"
        );
    }

    #[test]
    fn dockerd_24_and_later_have_the_store() {
        assert!(version_gate((28, 5)).is_ok());
        assert!(version_gate((24, 0)).is_ok());
        assert!(version_gate((26, 1)).is_ok());
        let err = version_gate((20, 10)).unwrap_err().to_string();
        assert!(err.contains("20.10") && err.contains("24.0"), "{err}");
    }

    #[test]
    fn an_overlayfs_data_root_is_refused() {
        assert!(check_data_root(Path::new("/var/lib/docker"), false).is_ok());
        let err = check_data_root(Path::new("/srv/docker"), true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/srv/docker is on overlayfs") && err.contains("-v NAME:/srv/docker"),
            "{err}"
        );
    }
}
