//! The overlay driver, laid out like moby's overlay2
//! (`daemon/graphdriver/overlay2/overlay.go`, v20.10.24):
//!
//! ```text
//! <home>/l/<LID>          -> ../<id>/diff   (26-char short names)
//! <home>/<id>/diff/       the layer's own files (overlay upper dir)
//! <home>/<id>/link        LID
//! <home>/<id>/lower       l/<parent LID>:l/<grandparent LID>:…  (only with a parent)
//! <home>/<id>/work/       overlay work dir (only with a parent)
//! <home>/<id>/merged/     mount point, while mounted
//! <home>/<id>/committed   marks a layer with children: mounted read-only
//! ```
//!
//! `Get` mounts `merged` (reference-counted), `Put` unmounts it at zero.
//! The directory is writable from inside the box, so nothing read back
//! from it is trusted: `lower` entries must be `l/<LID>`, each short link
//! must point at `../<valid id>/diff`, and the mount is given
//! `/proc/self/fd/N` paths of directories opened without following
//! symlinks, so a swapped symlink cannot make the host mount `/etc`.
//! Those paths are short, which also keeps 128 layers under the one-page
//! limit on mount data without moby's chdir trick.
//!
//! Diffs are native: a layer's `diff` directory is its change set, with
//! whiteouts as 0:0 character devices and opaque directories marked by
//! `trusted.overlay.opaque=y`, so mounts use `redirect_dir=off` (a renamed
//! directory is then copied, never a redirect the diff would miss).

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::{debug, warn};

use super::archive::{self, Quota, WhiteoutFormat};
use super::beneath::{self, Dir};
use super::protocol::{Change, ChangeKind, LayerId};
use super::{DiffSource, Driver, DriverError, LayerDirs};

/// moby's `maxDepth`.
pub const MAX_DEPTH: usize = 128;
/// Length of the short link names in `l/`.
pub const LINK_LEN: usize = 26;
/// The kernel reads mount data from one page.
pub const MAX_MOUNT_DATA: usize = 4095;

/// Mounting, behind a trait so the driver is tested without root.
pub trait Mounter: Send + Sync {
    fn mount_overlay(&self, target: &Path, data: &str) -> io::Result<()>;
    /// Detaches the mount at `target`, not following a symlink there.
    fn unmount(&self, target: &Path) -> io::Result<()>;
    /// Whether something is mounted at `target` (not following it).
    fn is_mounted(&self, target: &Path) -> bool;
}

/// The real thing: mount(2) and umount2(2) through nix.
pub struct SysMounter;

impl Mounter for SysMounter {
    fn mount_overlay(&self, target: &Path, data: &str) -> io::Result<()> {
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(data),
        )
        .map_err(io::Error::from)
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        use nix::mount::MntFlags;
        nix::mount::umount2(target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW)
            .map_err(io::Error::from)
    }

    fn is_mounted(&self, target: &Path) -> bool {
        let parent = target.parent().unwrap_or(Path::new("/"));
        match (fs::symlink_metadata(target), fs::symlink_metadata(parent)) {
            (Ok(t), Ok(p)) => t.is_dir() && t.dev() != p.dev(),
            _ => false,
        }
    }
}

/// What to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayMount {
    /// Lower directories, uppermost first.
    pub lowers: Vec<PathBuf>,
    /// Upper and work directories; none for a read-only mount.
    pub upper: Option<(PathBuf, PathBuf)>,
    /// Add `index=off` (when the kernel has the parameter).
    pub index_off: bool,
    /// Add `redirect_dir=off` (when the kernel has the parameter).
    pub redirect_off: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    #[error("an overlay mount needs at least one lower directory")]
    NoLower,
    #[error("overlay path {0:?} contains `,` or `:` or is not valid UTF-8")]
    BadPath(PathBuf),
    #[error("overlay mount data is {0} bytes, more than the kernel's {MAX_MOUNT_DATA}")]
    TooLong(usize),
}

/// The mount data string for an overlay mount. Pure.
pub fn overlay_options(m: &OverlayMount) -> Result<String, OptionsError> {
    if m.lowers.is_empty() {
        return Err(OptionsError::NoLower);
    }
    let text = |p: &PathBuf| match p.to_str() {
        Some(s) if !s.contains([',', ':']) && !s.is_empty() => Ok(s.to_string()),
        _ => Err(OptionsError::BadPath(p.clone())),
    };
    let mut opts = Vec::new();
    if m.index_off {
        opts.push("index=off".to_string());
    }
    if m.redirect_off {
        opts.push("redirect_dir=off".to_string());
    }
    let lowers = m.lowers.iter().map(text).collect::<Result<Vec<_>, _>>()?;
    opts.push(format!("lowerdir={}", lowers.join(":")));
    if let Some((upper, work)) = &m.upper {
        opts.push(format!("upperdir={}", text(upper)?));
        opts.push(format!("workdir={}", text(work)?));
    }
    let data = opts.join(",");
    if data.len() > MAX_MOUNT_DATA {
        return Err(OptionsError::TooLong(data.len()));
    }
    Ok(data)
}

/// Parses a `lower` file: `l/<LID>` entries joined by `:`. Pure.
pub fn parse_lower(text: &str) -> Result<Vec<String>, String> {
    let text = text.trim_end_matches('\n');
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let links: Vec<String> = text
        .split(':')
        .map(|part| match part.strip_prefix("l/") {
            Some(lid) if valid_link(lid) => Ok(lid.to_string()),
            _ => Err(format!("bad lower entry {part:?}")),
        })
        .collect::<Result<_, _>>()?;
    if links.len() > MAX_DEPTH {
        return Err(format!(
            "{} lower layers, more than {MAX_DEPTH}",
            links.len()
        ));
    }
    Ok(links)
}

fn valid_link(lid: &str) -> bool {
    lid.len() == LINK_LEN
        && lid
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn random_link() -> io::Result<String> {
    const ALPHABET: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = [0u8; LINK_LEN];
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % 36] as char)
        .collect())
}

pub struct Overlay {
    /// The home: one directory per layer, and `l/`.
    layers: LayerDirs,
    mounter: Arc<dyn Mounter>,
    /// Get/Put counts per mounted layer (moby's `RefCounter`).
    refs: Mutex<HashMap<LayerId, usize>>,
    index_off: bool,
    redirect_off: bool,
}

impl Overlay {
    pub fn open(
        home_path: &Path,
        home: &Dir,
        mounter: Arc<dyn Mounter>,
    ) -> Result<Overlay, DriverError> {
        home.mkdir(OsStr::new("l"), 0o700)
            .map_err(DriverError::io("creating", home_path.join("l").display()))?;
        let param = |name: &str| {
            Path::new("/sys/module/overlay/parameters")
                .join(name)
                .exists()
        };
        Ok(Overlay {
            layers: LayerDirs::new(
                home_path.to_path_buf(),
                home.try_clone()
                    .map_err(DriverError::io("opening", home_path.display()))?,
            ),
            mounter,
            refs: Mutex::new(HashMap::new()),
            index_off: param("index"),
            redirect_off: param("redirect_dir"),
        })
    }

    /// Mounts a throw-away overlay under `home` to learn whether the kernel
    /// allows overlay here (a missing module, overlay on overlay, no d_type).
    pub fn probe(&self) -> Result<(), DriverError> {
        let name = OsStr::new(".probe");
        let _ = self.layers.dir.remove(name);
        let result = (|| -> io::Result<()> {
            let dir = self.layers.dir.create_rel(Path::new(".probe"), 0o700)?;
            for sub in ["lower", "upper", "work", "merged"] {
                dir.mkdir(OsStr::new(sub), 0o700)?;
            }
            let open = |s: &str| dir.open_dir(OsStr::new(s));
            let (lower, upper, work, merged) = (
                open("lower")?,
                open("upper")?,
                open("work")?,
                open("merged")?,
            );
            let data = overlay_options(&OverlayMount {
                lowers: vec![lower.path()],
                upper: Some((upper.path(), work.path())),
                index_off: self.index_off,
                redirect_off: self.redirect_off,
            })
            .map_err(io::Error::other)?;
            self.mounter.mount_overlay(&merged.path(), &data)?;
            self.mounter.unmount(&dir.child(OsStr::new("merged"))?)?;
            Ok(())
        })();
        let _ = self.layers.dir.remove(name);
        result.map_err(|source| DriverError::Mount {
            id: LayerId::parse("probe").expect("valid"),
            target: self.layers.path.join(".probe/merged").display().to_string(),
            source,
            hint: "; the kernel refused overlay here: use --driver vfs, or put the root on a file system overlay accepts as upper (ext4, xfs with d_type), not on overlay",
        })
    }

    fn layer(&self, id: &LayerId) -> Result<Dir, DriverError> {
        if id.as_str() == "l" {
            return Err(DriverError::Invalid(
                "layer ID \"l\" is reserved by the overlay layout (its short-link directory)"
                    .into(),
            ));
        }
        self.layers.open(id)
    }

    fn sub(&self, layer: &Dir, id: &LayerId, name: &str) -> Result<Dir, DriverError> {
        layer.open_dir(OsStr::new(name)).map_err(DriverError::io(
            "opening",
            format!("{}/{name}", self.layers.layer_path(id).display()),
        ))
    }

    fn read_small(
        &self,
        layer: &Dir,
        id: &LayerId,
        name: &str,
    ) -> Result<Option<String>, DriverError> {
        let path = || format!("{}/{name}", self.layers.layer_path(id).display());
        match layer.open_file(OsStr::new(name)) {
            Ok(file) => {
                let mut text = String::new();
                file.take(64 * 1024)
                    .read_to_string(&mut text)
                    .map_err(DriverError::io("reading", path()))?;
                Ok(Some(text))
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(DriverError::io("reading", path())(err)),
        }
    }

    /// The layer IDs below `id`, uppermost first, resolved through `l/`.
    fn lower_ids(&self, layer: &Dir, id: &LayerId) -> Result<Vec<LayerId>, DriverError> {
        let Some(text) = self.read_small(layer, id, "lower")? else {
            return Ok(Vec::new());
        };
        let bad = |why: String| {
            DriverError::Invalid(format!("layer {id} has a damaged lower file: {why}"))
        };
        let links = parse_lower(&text).map_err(bad)?;
        let l = self
            .layers
            .dir
            .open_dir(OsStr::new("l"))
            .map_err(DriverError::io(
                "opening",
                self.layers.path.join("l").display(),
            ))?;
        links
            .iter()
            .map(|lid| {
                let target = l
                    .read_link(OsStr::new(lid))
                    .map_err(|e| bad(format!("l/{lid}: {e}")))?;
                let mut parts = target
                    .components()
                    .map(|c| c.as_os_str().to_str().unwrap_or(""));
                match (parts.next(), parts.next(), parts.next(), parts.next()) {
                    (Some(".."), Some(lower), Some("diff"), None) => {
                        LayerId::parse(lower).map_err(|e| bad(format!("l/{lid}: {e}")))
                    }
                    _ => Err(bad(format!("l/{lid} points at {}", target.display()))),
                }
            })
            .collect()
    }

    fn lower_diffs(&self, lowers: &[LayerId]) -> Result<Vec<Dir>, DriverError> {
        lowers
            .iter()
            .map(|lower| {
                let dir = self.layer(lower)?;
                self.sub(&dir, lower, "diff")
            })
            .collect()
    }

    /// Refuses a Diff/Changes parent other than the layer's own.
    fn check_parent(
        &self,
        id: &LayerId,
        lowers: &[LayerId],
        parent: Option<&LayerId>,
    ) -> Result<(), DriverError> {
        if lowers.first() == parent {
            return Ok(());
        }
        Err(DriverError::Invalid(format!(
            "the overlay driver diffs a layer only against its own parent: {id} sits on {}, not {}",
            lowers.first().map_or("nothing", |l| l.as_str()),
            parent.map_or("nothing", |p| p.as_str()),
        )))
    }

    fn count(&self, refs: &mut HashMap<LayerId, usize>, id: &LayerId, merged: &Path) -> usize {
        *refs.entry(id.clone()).or_insert_with(|| {
            // First sight of this layer since start: a mount left by an
            // earlier server is in use by someone (moby's RefCounter does the same).
            usize::from(self.mounter.is_mounted(merged))
        })
    }
}

impl Driver for Overlay {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn create(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        _rw: bool,
        _quota: &mut Quota,
    ) -> Result<(), DriverError> {
        self.layers.ensure_absent(id)?;
        let lower = match parent {
            None => None,
            Some(parent) => {
                let pdir = self.layer(parent)?;
                let plink = self.read_small(&pdir, parent, "link")?.unwrap_or_default();
                if !valid_link(plink.trim()) {
                    return Err(DriverError::Invalid(format!(
                        "layer {parent} has a damaged link file"
                    )));
                }
                let mut lower = format!("l/{}", plink.trim());
                let grand = self.read_small(&pdir, parent, "lower")?.unwrap_or_default();
                let depth = parse_lower(&grand).map_err(DriverError::Invalid)?.len() + 1;
                if depth >= MAX_DEPTH {
                    return Err(DriverError::Invalid(format!(
                        "layer {id} would sit on {depth} layers; overlay allows at most {MAX_DEPTH}"
                    )));
                }
                if !grand.trim().is_empty() {
                    lower.push(':');
                    lower.push_str(grand.trim());
                }
                match pdir.create_file(OsStr::new("committed"), 0o600) {
                    Err(err) if err.kind() != io::ErrorKind::AlreadyExists => {
                        return Err(DriverError::io("marking committed", parent)(err))
                    }
                    _ => {}
                }
                Some(lower)
            }
        };
        let layer = self.layers.make(id, 0o710)?;
        let path = self.layers.layer_path(id);
        let io = |op| DriverError::io(op, path.display());
        layer
            .mkdir(OsStr::new("diff"), 0o755)
            .map_err(io("creating diff in"))?;
        let lid = random_link().map_err(io("naming"))?;
        let l = self
            .layers
            .dir
            .open_dir(OsStr::new("l"))
            .map_err(io("opening l/ for"))?;
        std::os::unix::fs::symlink(
            format!("../{id}/diff"),
            l.child(OsStr::new(&lid)).map_err(io("linking"))?,
        )
        .map_err(io("linking"))?;
        layer
            .create_file(OsStr::new("link"), 0o644)
            .and_then(|mut f| f.write_all(lid.as_bytes()))
            .map_err(io("writing link in"))?;
        if let Some(lower) = lower {
            layer
                .create_file(OsStr::new("lower"), 0o644)
                .and_then(|mut f| f.write_all(lower.as_bytes()))
                .map_err(io("writing lower in"))?;
            layer
                .mkdir(OsStr::new("work"), 0o700)
                .map_err(io("creating work in"))?;
        }
        Ok(())
    }

    fn remove(&self, id: &LayerId) -> Result<(), DriverError> {
        let layer = match self.layer(id) {
            Err(DriverError::NotFound(_)) => return Ok(()),
            other => other?,
        };
        let merged = layer
            .child(OsStr::new("merged"))
            .map_err(DriverError::io("removing", id))?;
        if self.mounter.is_mounted(&merged) {
            warn!(layer = %id, "removing a layer that is still mounted; detaching it");
            let _ = self.mounter.unmount(&merged);
        }
        self.refs.lock().expect("refs lock").remove(id);
        if let Some(lid) = self.read_small(&layer, id, "link")? {
            if valid_link(lid.trim()) {
                if let Ok(l) = self.layers.dir.open_dir(OsStr::new("l")) {
                    let _ = l.remove(OsStr::new(lid.trim()));
                }
            }
        }
        self.layers.remove(id)
    }

    fn get(&self, id: &LayerId) -> Result<PathBuf, DriverError> {
        let layer = self.layer(id)?;
        let dir = self.layers.layer_path(id);
        let lowers = self.lower_ids(&layer, id)?;
        if lowers.is_empty() {
            self.sub(&layer, id, "diff")?;
            return Ok(dir.join("diff"));
        }
        let merged_path = dir.join("merged");
        let merged = layer
            .child(OsStr::new("merged"))
            .map_err(DriverError::io("mounting", id))?;
        let mut refs = self.refs.lock().expect("refs lock");
        let count = self.count(&mut refs, id, &merged);
        if count > 0 {
            refs.insert(id.clone(), count + 1);
            return Ok(merged_path);
        }
        layer
            .mkdir(OsStr::new("merged"), 0o700)
            .map_err(DriverError::io("creating", merged_path.display()))?;
        let target = self.sub(&layer, id, "merged")?;
        let diff = self.sub(&layer, id, "diff")?;
        let lower_dirs = self.lower_diffs(&lowers)?;
        let committed = layer
            .lstat(OsStr::new("committed"))
            .ok()
            .flatten()
            .is_some();
        let mut spec = OverlayMount {
            lowers: lower_dirs.iter().map(Dir::path).collect(),
            upper: None,
            index_off: self.index_off,
            redirect_off: self.redirect_off,
        };
        // The descriptors behind the /proc/self/fd paths live until the mount is done.
        let work = if committed {
            None
        } else {
            Some(self.sub(&layer, id, "work")?)
        };
        match &work {
            // A layer with children is a lower of theirs: never its upper.
            None => spec.lowers.insert(0, diff.path()),
            Some(work) => spec.upper = Some((diff.path(), work.path())),
        }
        let data = overlay_options(&spec).map_err(|e| DriverError::Invalid(e.to_string()))?;
        self.mount(id, &target, &data, &merged_path, &mut refs)
    }

    fn put(&self, id: &LayerId) -> Result<(), DriverError> {
        let layer = self.layer(id)?;
        if self.lower_ids(&layer, id)?.is_empty() {
            return Ok(());
        }
        let merged = layer
            .child(OsStr::new("merged"))
            .map_err(DriverError::io("unmounting", id))?;
        let mut refs = self.refs.lock().expect("refs lock");
        let count = self.count(&mut refs, id, &merged);
        if count == 0 {
            debug!(layer = %id, "Put of a layer that is not mounted");
            return Ok(());
        }
        refs.insert(id.clone(), count - 1);
        if count > 1 {
            return Ok(());
        }
        refs.remove(id);
        if let Err(err) = self.mounter.unmount(&merged) {
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(DriverError::io(
                    "unmounting",
                    self.layers.layer_path(id).join("merged").display(),
                )(err));
            }
        }
        // Removing the mount point drops copies of the mount in other namespaces.
        let _ = fs::remove_dir(&merged);
        Ok(())
    }

    fn exists(&self, id: &LayerId) -> bool {
        self.layer(id).is_ok()
    }

    fn status(&self) -> Vec<(String, String)> {
        let fs_name = nix::sys::statfs::statfs(&self.layers.dir.path())
            .map(|s| fs_type_name(s.filesystem_type()))
            .unwrap_or("unknown");
        vec![
            ("Backing Filesystem".into(), fs_name.into()),
            ("Supports d_type".into(), "true".into()),
            ("Native Overlay Diff".into(), "true".into()),
            ("userxattr".into(), "false".into()),
        ]
    }

    fn metadata(&self, id: &LayerId) -> Result<BTreeMap<String, Vec<PathBuf>>, DriverError> {
        let layer = self.layer(id)?;
        let dir = self.layers.layer_path(id);
        let mut meta = BTreeMap::from([
            ("WorkDir".to_string(), vec![dir.join("work")]),
            ("MergedDir".to_string(), vec![dir.join("merged")]),
            ("UpperDir".to_string(), vec![dir.join("diff")]),
        ]);
        let lowers = self.lower_ids(&layer, id)?;
        if !lowers.is_empty() {
            let paths = lowers
                .iter()
                .map(|l| self.layers.path.join(l.as_str()).join("diff"))
                .collect();
            meta.insert("LowerDir".to_string(), paths);
        }
        Ok(meta)
    }

    fn cleanup(&self) -> Result<(), DriverError> {
        let mut refs = self.refs.lock().expect("refs lock");
        for (id, count) in refs.drain() {
            if count == 0 {
                continue;
            }
            if let Ok(layer) = self.layer(&id) {
                if let Ok(merged) = layer.child(OsStr::new("merged")) {
                    if let Err(err) = self.mounter.unmount(&merged) {
                        warn!(layer = %id, error = %err, "cleanup: unmount failed");
                    }
                    let _ = fs::remove_dir(&merged);
                }
            }
        }
        Ok(())
    }

    fn changes(&self, id: &LayerId, parent: Option<&LayerId>) -> Result<Vec<Change>, DriverError> {
        let layer = self.layer(id)?;
        let lowers = self.lower_ids(&layer, id)?;
        self.check_parent(id, &lowers, parent)?;
        let diff = self.sub(&layer, id, "diff")?;
        let lower_dirs = self.lower_diffs(&lowers)?;
        let mut out = Vec::new();
        upper_changes(&diff, &lower_dirs, Path::new(""), &mut out)
            .map_err(DriverError::io("comparing layer", id))?;
        Ok(super::changes::to_wire(&out))
    }

    fn diff(&self, id: &LayerId, parent: Option<&LayerId>) -> Result<DiffSource, DriverError> {
        let layer = self.layer(id)?;
        let lowers = self.lower_ids(&layer, id)?;
        self.check_parent(id, &lowers, parent)?;
        let diff = self.sub(&layer, id, "diff")?;
        let items = archive::overlay_items(&diff).map_err(DriverError::io("reading layer", id))?;
        Ok(DiffSource { root: diff, items })
    }

    fn apply_diff(
        &self,
        id: &LayerId,
        _parent: Option<&LayerId>,
        tar: &mut dyn Read,
        quota: &mut Quota,
    ) -> Result<u64, DriverError> {
        let layer = self.layer(id)?;
        let diff = self.sub(&layer, id, "diff")?;
        Ok(archive::apply_layer(
            &diff,
            tar,
            WhiteoutFormat::Overlay,
            quota,
        )?)
    }

    fn diff_size(&self, id: &LayerId, parent: Option<&LayerId>) -> Result<u64, DriverError> {
        let layer = self.layer(id)?;
        let lowers = self.lower_ids(&layer, id)?;
        self.check_parent(id, &lowers, parent)?;
        self.size(id)
    }

    fn layers(&self) -> Result<Vec<LayerId>, DriverError> {
        let mut ids = self.layers.ids()?;
        ids.retain(|id| id.as_str() != "l");
        Ok(ids)
    }

    fn size(&self, id: &LayerId) -> Result<u64, DriverError> {
        let layer = self.layer(id)?;
        let diff = self.sub(&layer, id, "diff")?;
        beneath::tree_size(&diff).map_err(DriverError::io("measuring layer", id))
    }
}

impl Overlay {
    fn mount(
        &self,
        id: &LayerId,
        target: &Dir,
        data: &str,
        shown: &Path,
        refs: &mut HashMap<LayerId, usize>,
    ) -> Result<PathBuf, DriverError> {
        debug!(layer = %id, data, "mounting overlay");
        match self.mounter.mount_overlay(&target.path(), data) {
            Ok(()) => {
                refs.insert(id.clone(), 1);
                Ok(shown.to_path_buf())
            }
            Err(source) => {
                refs.remove(id);
                Err(DriverError::Mount {
                    id: id.clone(),
                    target: shown.display().to_string(),
                    source,
                    hint: "",
                })
            }
        }
    }
}

/// The changes an upper dir makes over its lowers: whiteouts are
/// deletions, everything else is a Modify if a lower layer has it, else an Add.
fn upper_changes(
    dir: &Dir,
    lowers: &[Dir],
    rel: &Path,
    out: &mut Vec<(PathBuf, ChangeKind)>,
) -> io::Result<()> {
    for name in dir.names()? {
        let Some(meta) = dir.lstat(&name)? else {
            continue;
        };
        let path = rel.join(&name);
        if beneath::is_whiteout(&meta) {
            out.push((path, ChangeKind::Delete));
            continue;
        }
        let kind = if in_lowers(lowers, &path) {
            ChangeKind::Modify
        } else {
            ChangeKind::Add
        };
        out.push((path.clone(), kind));
        if meta.is_dir() {
            upper_changes(&dir.open_dir(&name)?, lowers, &path, out)?;
        }
    }
    Ok(())
}

/// Whether `rel` exists in the union of `lowers` (uppermost first), with
/// whiteouts and opaque directories applied.
fn in_lowers(lowers: &[Dir], rel: &Path) -> bool {
    let parts: Vec<&OsStr> = rel.iter().collect();
    for layer in lowers {
        let Ok(mut dir) = layer.try_clone() else {
            return false;
        };
        let mut opaque = false;
        for (i, part) in parts.iter().enumerate() {
            match dir.lstat(part) {
                Ok(Some(meta)) if beneath::is_whiteout(&meta) => return false,
                Ok(Some(_)) if i + 1 == parts.len() => return true,
                Ok(Some(meta)) if meta.is_dir() => match dir.open_dir(part) {
                    Ok(next) => {
                        opaque |= archive::is_opaque(&next);
                        dir = next;
                    }
                    Err(_) => return false,
                },
                // A file where a directory would be hides the rest below.
                Ok(Some(_)) => return false,
                _ => break,
            }
        }
        if opaque {
            return false;
        }
    }
    false
}

fn fs_type_name(kind: nix::sys::statfs::FsType) -> &'static str {
    use nix::sys::statfs::{
        BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, OVERLAYFS_SUPER_MAGIC, TMPFS_MAGIC, XFS_SUPER_MAGIC,
    };
    [
        (EXT4_SUPER_MAGIC, "extfs"),
        (XFS_SUPER_MAGIC, "xfs"),
        (BTRFS_SUPER_MAGIC, "btrfs"),
        (TMPFS_MAGIC, "tmpfs"),
        (OVERLAYFS_SUPER_MAGIC, "overlayfs"),
    ]
    .into_iter()
    .find(|(magic, _)| *magic == kind)
    .map_or("unknown", |(_, name)| name)
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    /// One call the fake mounter saw.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum MountCall {
        Mount { target: PathBuf, data: String },
        Unmount { target: PathBuf },
    }

    /// Records mount calls; "mounted" targets are remembered by path.
    #[derive(Default)]
    pub struct FakeMounter {
        pub calls: Mutex<Vec<MountCall>>,
        pub mounted: Mutex<Vec<PathBuf>>,
        pub fail: bool,
    }

    impl Mounter for FakeMounter {
        fn mount_overlay(&self, target: &Path, data: &str) -> io::Result<()> {
            self.calls.lock().unwrap().push(MountCall::Mount {
                target: target.to_path_buf(),
                data: data.to_string(),
            });
            if self.fail {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            // Remember the real directory, whatever fd path named it.
            self.mounted.lock().unwrap().push(fs::canonicalize(target)?);
            Ok(())
        }

        fn unmount(&self, target: &Path) -> io::Result<()> {
            self.calls.lock().unwrap().push(MountCall::Unmount {
                target: target.to_path_buf(),
            });
            let real = fs::canonicalize(target)?;
            self.mounted.lock().unwrap().retain(|m| *m != real);
            Ok(())
        }

        fn is_mounted(&self, target: &Path) -> bool {
            fs::canonicalize(target).is_ok_and(|real| self.mounted.lock().unwrap().contains(&real))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::{FakeMounter, MountCall};
    use super::*;
    use crate::graphdriver_server::archive::test_util::{tar, T};

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    fn id(s: &str) -> LayerId {
        LayerId::parse(s).unwrap()
    }

    #[test]
    fn mount_options_table() {
        let rw = OverlayMount {
            lowers: vec![p("/h/l/B"), p("/h/l/A")],
            upper: Some((p("/h/c/diff"), p("/h/c/work"))),
            index_off: false,
            redirect_off: false,
        };
        let table: Vec<(OverlayMount, Result<String, OptionsError>)> = vec![
            (rw.clone(), Ok("lowerdir=/h/l/B:/h/l/A,upperdir=/h/c/diff,workdir=/h/c/work".into())),
            (
                OverlayMount { index_off: true, redirect_off: true, ..rw.clone() },
                Ok("index=off,redirect_dir=off,lowerdir=/h/l/B:/h/l/A,upperdir=/h/c/diff,workdir=/h/c/work".into()),
            ),
            (
                OverlayMount { upper: None, lowers: vec![p("/h/c/diff"), p("/h/l/A")], ..rw.clone() },
                Ok("lowerdir=/h/c/diff:/h/l/A".into()),
            ),
            (OverlayMount { lowers: vec![], ..rw.clone() }, Err(OptionsError::NoLower)),
            (
                OverlayMount { lowers: vec![p("/a:b")], ..rw.clone() },
                Err(OptionsError::BadPath(p("/a:b"))),
            ),
            (
                OverlayMount { upper: Some((p("/u,x"), p("/w"))), ..rw.clone() },
                Err(OptionsError::BadPath(p("/u,x"))),
            ),
            (
                OverlayMount { lowers: vec![p(&format!("/{}", "x".repeat(4100)))], upper: None, ..rw.clone() },
                Err(OptionsError::TooLong(4110)),
            ),
        ];
        for (mount, want) in table {
            assert_eq!(overlay_options(&mount), want, "{mount:?}");
        }
        // 128 layers of /proc/self/fd/NNNN fit in a page.
        let deep = OverlayMount {
            lowers: (0..MAX_DEPTH)
                .map(|i| p(&format!("/proc/self/fd/{}", 1000 + i)))
                .collect(),
            upper: Some((p("/proc/self/fd/9998"), p("/proc/self/fd/9999"))),
            index_off: true,
            redirect_off: true,
        };
        assert!(overlay_options(&deep).is_ok());
    }

    #[test]
    fn lower_files_are_parsed_strictly() {
        let a = "A".repeat(LINK_LEN);
        let b = "B".repeat(LINK_LEN);
        assert_eq!(parse_lower("").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_lower(&format!("l/{a}:l/{b}\n")).unwrap(),
            vec![a.clone(), b]
        );
        for bad in [
            "/etc",
            "l/../../etc",
            "l/short",
            &format!("l/{a}:/x"),
            &format!("x/{a}"),
        ] {
            assert!(parse_lower(bad).is_err(), "{bad}");
        }
    }

    struct Fixture {
        _tmp: tempfile::TempDir,
        path: PathBuf,
        fake: Arc<FakeMounter>,
        driver: Overlay,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("home");
        fs::create_dir(&path).unwrap();
        let fake = Arc::new(FakeMounter::default());
        let driver = Overlay::open(&path, &Dir::open(&path).unwrap(), fake.clone()).unwrap();
        Fixture {
            _tmp: tmp,
            path,
            fake,
            driver,
        }
    }

    #[test]
    fn layout_matches_overlay2() {
        let f = fixture();
        let mut q = Quota::unlimited();
        f.driver.create(&id("base"), None, false, &mut q).unwrap();
        f.driver
            .create(&id("mid"), Some(&id("base")), false, &mut q)
            .unwrap();
        f.driver
            .create(&id("top"), Some(&id("mid")), true, &mut q)
            .unwrap();
        let link = |l: &str| fs::read_to_string(f.path.join(l).join("link")).unwrap();
        assert_eq!(link("base").len(), LINK_LEN);
        assert!(!f.path.join("base/lower").exists());
        assert!(!f.path.join("base/work").exists());
        assert_eq!(
            fs::read_to_string(f.path.join("mid/lower")).unwrap(),
            format!("l/{}", link("base"))
        );
        assert_eq!(
            fs::read_to_string(f.path.join("top/lower")).unwrap(),
            format!("l/{}:l/{}", link("mid"), link("base"))
        );
        assert_eq!(
            fs::read_link(f.path.join("l").join(link("top"))).unwrap(),
            p("../top/diff")
        );
        assert!(f.path.join("base/committed").exists() && f.path.join("mid/committed").exists());
        assert!(!f.path.join("top/committed").exists());

        let meta = f.driver.metadata(&id("top")).unwrap();
        assert_eq!(meta["UpperDir"], vec![f.path.join("top/diff")]);
        assert_eq!(
            meta["LowerDir"],
            vec![f.path.join("mid/diff"), f.path.join("base/diff")]
        );

        f.driver.remove(&id("top")).unwrap();
        assert!(!f.path.join("top").exists());
        assert!(
            f.driver.remove(&id("l")).is_err(),
            "the short-link directory is not a layer"
        );
        assert!(f.path.join("l").is_dir());
        assert_eq!(fs::read_dir(f.path.join("l")).unwrap().count(), 2);
    }

    #[test]
    fn get_mounts_once_and_put_unmounts_at_zero() {
        let f = fixture();
        let mut q = Quota::unlimited();
        f.driver.create(&id("base"), None, false, &mut q).unwrap();
        f.driver
            .create(&id("c"), Some(&id("base")), true, &mut q)
            .unwrap();

        assert_eq!(
            f.driver.get(&id("base")).unwrap(),
            f.path.join("base/diff"),
            "a base layer needs no mount"
        );
        let dir = f.driver.get(&id("c")).unwrap();
        assert_eq!(dir, f.path.join("c/merged"));
        assert_eq!(f.driver.get(&id("c")).unwrap(), dir, "Get is stable");
        let calls = f.fake.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 1, "{calls:?}");
        let MountCall::Mount { data, .. } = &calls[0] else {
            panic!("{calls:?}")
        };
        let opts: Vec<&str> = data
            .split(',')
            .map(|o| o.split('=').next().unwrap())
            .collect();
        assert!(
            opts.ends_with(&["lowerdir", "upperdir", "workdir"]),
            "{data}"
        );

        f.driver.put(&id("c")).unwrap();
        assert_eq!(
            f.fake.calls.lock().unwrap().len(),
            1,
            "still one Get outstanding"
        );
        f.driver.put(&id("c")).unwrap();
        let calls = f.fake.calls.lock().unwrap().clone();
        assert!(
            matches!(calls.last(), Some(MountCall::Unmount { .. })),
            "{calls:?}"
        );
        assert!(!f.path.join("c/merged").exists());
        f.driver.put(&id("c")).unwrap();
        assert_eq!(
            f.fake.calls.lock().unwrap().len(),
            2,
            "an extra Put does nothing"
        );

        // A committed layer (it has children) mounts read-only: no upperdir.
        f.driver
            .create(&id("c2"), Some(&id("c")), true, &mut q)
            .unwrap();
        f.driver.get(&id("c")).unwrap();
        let calls = f.fake.calls.lock().unwrap().clone();
        let MountCall::Mount { data, .. } = calls.last().unwrap() else {
            panic!()
        };
        assert!(
            !data.contains("upperdir") && data.matches("/proc/self/fd/").count() == 2,
            "{data}"
        );
    }

    #[test]
    fn a_failed_mount_leaves_no_reference() {
        let tmp = tempfile::tempdir().unwrap();
        let fake = Arc::new(FakeMounter {
            fail: true,
            ..FakeMounter::default()
        });
        let d = Overlay::open(tmp.path(), &Dir::open(tmp.path()).unwrap(), fake.clone()).unwrap();
        let mut q = Quota::unlimited();
        d.create(&id("b"), None, false, &mut q).unwrap();
        d.create(&id("c"), Some(&id("b")), true, &mut q).unwrap();
        let err = d.get(&id("c")).unwrap_err();
        assert!(err.to_string().contains("failed to mount"), "{err}");
        assert!(d.refs.lock().unwrap().get(&id("c")).is_none());
        assert!(d.probe().unwrap_err().to_string().contains("--driver vfs"));
    }

    #[test]
    fn a_tampered_short_link_is_not_mounted() {
        let f = fixture();
        let mut q = Quota::unlimited();
        f.driver.create(&id("base"), None, false, &mut q).unwrap();
        f.driver
            .create(&id("c"), Some(&id("base")), true, &mut q)
            .unwrap();
        let lid = fs::read_to_string(f.path.join("base/link")).unwrap();
        fs::remove_file(f.path.join("l").join(&lid)).unwrap();
        std::os::unix::fs::symlink("/etc", f.path.join("l").join(&lid)).unwrap();
        let err = f.driver.get(&id("c")).unwrap_err();
        assert!(err.to_string().contains("damaged lower"), "{err}");
        assert!(f.fake.calls.lock().unwrap().is_empty());
    }

    #[test]
    fn changes_and_diff_come_from_the_upper_dir() {
        let f = fixture();
        let mut q = Quota::unlimited();
        f.driver.create(&id("base"), None, false, &mut q).unwrap();
        let base = tar(&[
            T::Dir("etc"),
            T::File("etc/passwd", b"root"),
            T::File("etc/hosts", b"h"),
        ]);
        f.driver
            .apply_diff(&id("base"), None, &mut &base[..], &mut q)
            .unwrap();
        f.driver
            .create(&id("c"), Some(&id("base")), true, &mut q)
            .unwrap();
        // What the kernel would leave in the upper dir.
        let top = tar(&[
            T::Dir("etc"),
            T::File("etc/.wh.passwd", b""),
            T::File("etc/hosts", b"hh"),
            T::File("new", b"n"),
        ]);
        f.driver
            .apply_diff(&id("c"), Some(&id("base")), &mut &top[..], &mut q)
            .unwrap();

        let changes = f.driver.changes(&id("c"), Some(&id("base"))).unwrap();
        let got: Vec<_> = changes
            .iter()
            .map(|c| (c.path.as_str(), u8::from(c.kind)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/etc", 0),
                ("/etc/hosts", 0),
                ("/etc/passwd", 2),
                ("/new", 1)
            ]
        );
        assert_eq!(f.driver.diff_size(&id("c"), Some(&id("base"))).unwrap(), 3);
        assert!(f.driver.changes(&id("c"), None).is_err(), "not its parent");

        let mut out = Vec::new();
        f.driver
            .diff(&id("c"), Some(&id("base")))
            .unwrap()
            .write_tar(&mut out)
            .unwrap();
        let names: Vec<String> = ::tar::Archive::new(&out[..])
            .entries()
            .unwrap()
            .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
            .collect();
        assert_eq!(names, ["etc/", "etc/hosts", "etc/.wh.passwd", "new"]);
    }

    #[test]
    fn lower_lookup_honours_whiteouts_and_opaque_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let (upper, lower) = (tmp.path().join("u"), tmp.path().join("d"));
        fs::create_dir_all(lower.join("a/b")).unwrap();
        fs::create_dir_all(lower.join("o")).unwrap();
        fs::write(lower.join("o/x"), "").unwrap();
        fs::write(lower.join("f"), "").unwrap();
        fs::create_dir_all(upper.join("o")).unwrap();
        xattr::set(upper.join("o"), archive::OPAQUE_XATTR, b"y").unwrap();
        nix::sys::stat::mknod(
            &upper.join("a"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        let lowers = [Dir::open(&upper).unwrap(), Dir::open(&lower).unwrap()];
        let table = [
            ("f", true),
            ("a", false),
            ("a/b", false),
            ("o", true),
            ("o/x", false),
            ("nope", false),
            ("f/x", false),
        ];
        for (rel, want) in table {
            assert_eq!(in_lowers(&lowers, Path::new(rel)), want, "{rel}");
        }
    }
}
