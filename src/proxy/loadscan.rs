//! Reads the tags out of a `docker load` archive as it streams past, the way
//! dockerd will read them: pure, fed chunk by chunk, no I/O.
//!
//! dockerd (`image/tarexport/load.go`) untars the whole body into a temporary
//! directory with Go's `archive/tar`, and only then reads `manifest.json`
//! (`RepoTags`), or the legacy `repositories` when there is none (and, with
//! the containerd image store, `index.json`'s annotations when an
//! `oci-layout` names a version, which the scanner keeps too). So the scanner
//! follows Go's reader entry by entry (`Reader.Next`: checksums, USTAR/STAR
//! prefixes, PAX `path` and `size`, GNU long names, header-only types), sees
//! where each entry lands once dockerd's untar has cleaned its name
//! (`filepath.Clean`, joined under the directory), keeps the tag files, and
//! reports where the archive ends: at the end-of-archive marker (two zero
//! blocks; Go stops reading there) or at the end of the body. The caller
//! forwards everything before that point, checks the tags, and only then
//! lets dockerd have the rest. The scanner also hands back what dockerd
//! gets: the archive with `manifest.json`'s `RepoTags` and `index.json`'s
//! image names taken out (that entry held whole, then written again with a
//! new header), every other byte as it came.
//!
//! In doubt it refuses: a tag file that is not a plain regular file (dockerd
//! follows a symlink), that is larger than [`MAX_TAG_FILE`], or that comes
//! twice (the last would win); an entry written beneath a symlink or a hard
//! link of the archive (it could land on a tag file); sparse entries; a
//! header Go would reject; a compression the proxy does not decode.

#![forbid(unsafe_code)]

use std::collections::HashSet;

use super::gopath::clean_path;
use super::policy::images::{
    archive_tags, index_entries, is_oci_layout, manifest_entries, strip_archive_tags,
    unreadable_archive, TagFile,
};
use super::policy::Reject;

const BLOCK: usize = 512;
/// The largest tag file the proxy reads (dockerd's are a few KiB).
pub const MAX_TAG_FILE: u64 = 1 << 20;
/// Go's `maxSpecialFileSize`: the largest PAX header or GNU long name.
const MAX_SPECIAL: u64 = 1 << 20;
/// The extended headers (PAX, GNU long names) held before the entry they
/// name, at most: until that entry's header says whether it is a tag file.
const MAX_PENDING: usize = 4 << 20;
/// Entries and links an archive may have (a `docker save` has a handful per layer).
const MAX_ENTRIES: u64 = 1_000_000;
const MAX_LINKS: usize = 100_000;

/// How a body is compressed, as dockerd's `archive.DetectCompression` tells
/// from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    /// Compressions dockerd may decode that the proxy does not (bzip2, xz,
    /// zstd): refused.
    Other(&'static str),
}

/// The bytes [`detect`] needs to decide (fewer only at the end of the body).
pub const DETECT_BYTES: usize = 6;

pub fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b, 0x08]) {
        Compression::Gzip
    } else if head.starts_with(b"BZh") {
        Compression::Other("bzip2")
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Other("xz")
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18])
    {
        Compression::Other("zstd")
    } else {
        Compression::None
    }
}

/// What a chunk fed to the [`Scanner`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The archive goes on.
    More,
    /// The end-of-archive marker ends at this offset of the chunk: Go's reader
    /// reads nothing after it.
    End(usize),
}

/// What the archive becomes for dockerd: a piece of the chunk just fed,
/// as it came, or bytes of the scanner's own (held extended headers, a tag
/// file with its tags taken out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Input(std::ops::Range<usize>),
    Owned(Vec<u8>),
}

/// Where the data and padding of the current entry go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Pass,
    /// An extended header's: held with it.
    Hold,
    /// A tag file's: captured, and written again when it ends.
    Drop,
}

/// A tag file being read: its header and the extended headers before it.
#[derive(Debug)]
struct Held {
    prefix: Vec<u8>,
    header: Vec<u8>,
}

#[derive(Debug)]
enum Sink {
    Skip,
    Pax,
    Global,
    LongName,
    LongLink,
    File(TagFile),
}

/// Go's `tar.Reader`, as far as where entries land and what tag files hold.
#[derive(Debug)]
pub struct Scanner {
    header: Vec<u8>,
    data_left: u64,
    pad_left: u64,
    sink: Sink,
    captured: Vec<u8>,
    /// The PAX records for the next entry (`path`, `size`).
    pax_path: Option<String>,
    pax_size: Option<u64>,
    long_name: Option<String>,
    zero_block: bool,
    ended: bool,
    entries: u64,
    links: HashSet<String>,
    files: Vec<(TagFile, Vec<u8>)>,
    seen: HashSet<&'static str>,
    route: Route,
    pending: Vec<u8>,
    held: Option<Held>,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner::new()
    }
}

impl Scanner {
    pub fn new() -> Scanner {
        Scanner {
            header: Vec::with_capacity(BLOCK),
            data_left: 0,
            pad_left: 0,
            sink: Sink::Skip,
            captured: Vec::new(),
            pax_path: None,
            pax_size: None,
            long_name: None,
            zero_block: false,
            ended: false,
            entries: 0,
            links: HashSet::new(),
            files: Vec::new(),
            seen: HashSet::new(),
            route: Route::Pass,
            pending: Vec::new(),
            held: None,
        }
    }

    /// Reads the next bytes of the (uncompressed) archive, and appends to
    /// `out` what dockerd gets for them: the same bytes, except that tag
    /// files come with their tags taken out (a new header, data and
    /// padding), and that header blocks (and extended headers) come once
    /// they are whole. At [`Step::End`] everything up to the end marker is
    /// in `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Piece>) -> Result<Step, Reject> {
        let mut i = 0;
        while i < data.len() {
            if self.ended {
                return Ok(Step::End(i));
            }
            let rest = &data[i..];
            if self.data_left > 0 {
                let n = rest
                    .len()
                    .min(usize::try_from(self.data_left).unwrap_or(usize::MAX));
                if !matches!(self.sink, Sink::Skip) {
                    self.captured.extend_from_slice(&rest[..n]);
                }
                self.route_bytes(data, i..i + n, out);
                self.data_left -= n as u64;
                i += n;
                if self.data_left == 0 {
                    self.entry_done(out)?;
                }
                continue;
            }
            if self.pad_left > 0 {
                let n = rest.len().min(self.pad_left as usize);
                self.route_bytes(data, i..i + n, out);
                self.pad_left -= n as u64;
                i += n;
                continue;
            }
            let n = rest.len().min(BLOCK - self.header.len());
            self.header.extend_from_slice(&rest[..n]);
            i += n;
            if self.header.len() == BLOCK {
                let block = std::mem::replace(&mut self.header, Vec::with_capacity(BLOCK));
                self.block(block, out)?;
                if self.ended {
                    return Ok(Step::End(i));
                }
            }
        }
        Ok(Step::More)
    }

    /// The body ended: Go's reader ends cleanly only on a header boundary
    /// (a truncated archive fails the load in dockerd, and here).
    /// Extended headers with no entry after them are refused too.
    pub fn finish(&self) -> Result<(), Reject> {
        if self.ended
            || (self.header.is_empty()
                && self.data_left == 0
                && self.pad_left == 0
                && self.pending.is_empty())
        {
            Ok(())
        } else {
            Err(unreadable_archive("the archive is truncated"))
        }
    }

    /// Every tag the archive's tag files name.
    pub fn tags(&self) -> Result<Vec<String>, Reject> {
        let mut tags = Vec::new();
        for (file, content) in &self.files {
            tags.extend(archive_tags(*file, content)?);
        }
        Ok(tags)
    }

    /// The tags of each image of the archive's `manifest.json`, in order;
    /// `None` without one.
    pub fn manifest(&self) -> Result<Option<Vec<Vec<String>>>, Reject> {
        match self.files.iter().find(|(f, _)| *f == TagFile::Manifest) {
            Some((_, content)) => manifest_entries(content).map(Some),
            None => Ok(None),
        }
    }

    /// The name of each image of the archive's `index.json`, in order, as
    /// the containerd image store reads them; `None` without one.
    pub fn index(&self) -> Result<Option<Vec<Vec<String>>>, Reject> {
        match self.files.iter().find(|(f, _)| *f == TagFile::Index) {
            Some((_, content)) => index_entries(content).map(Some),
            None => Ok(None),
        }
    }

    /// Whether the archive is an OCI layout to the containerd image store
    /// (an `oci-layout` with a version), which then reads its `index.json`.
    pub fn is_oci_layout(&self) -> Result<bool, Reject> {
        match self.files.iter().find(|(f, _)| *f == TagFile::Layout) {
            Some((_, content)) => is_oci_layout(content),
            None => Ok(false),
        }
    }

    /// The tags of one of the archive's tag files (none without it).
    pub fn tags_of(&self, file: TagFile) -> Result<Vec<String>, Reject> {
        match self.files.iter().find(|(f, _)| *f == file) {
            Some((_, content)) => archive_tags(file, content),
            None => Ok(Vec::new()),
        }
    }

    fn route_bytes(&mut self, data: &[u8], range: std::ops::Range<usize>, out: &mut Vec<Piece>) {
        match self.route {
            Route::Pass => push_input(out, range),
            Route::Hold => self.pending.extend_from_slice(&data[range]),
            Route::Drop => {}
        }
    }

    /// Held extended headers that turned out not to name a tag file, then
    /// `block`, go out as they came.
    fn pass_block(&mut self, block: Vec<u8>, out: &mut Vec<Piece>) {
        let mut bytes = std::mem::take(&mut self.pending);
        bytes.extend_from_slice(&block);
        out.push(Piece::Owned(bytes));
        self.route = Route::Pass;
    }

    fn block(&mut self, block: Vec<u8>, out: &mut Vec<Piece>) -> Result<(), Reject> {
        if block.iter().all(|&b| b == 0) {
            if self.zero_block {
                self.ended = true;
            }
            self.zero_block = true;
            self.pass_block(block, out);
            return Ok(());
        }
        let block = &block[..];
        if self.zero_block {
            return Err(bad_header("a zero block followed by more data"));
        }
        check_checksum(block)?;
        let magic = &block[257..263];
        let version = &block[263..265];
        let prefix = if magic == b"ustar\0" && &block[508..512] == b"tar\0" {
            go_string(&block[345..476]) // STAR
        } else if magic == b"ustar\0" {
            go_string(&block[345..500]) // USTAR and PAX
        } else {
            let _ = version; // GNU (`ustar  \0`) and V7 have no prefix
            String::new()
        };
        let mut name = go_string(&block[..100]);
        if !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
        // tar::Header gives the fields; Go's rules read them.
        let header = tar::Header::from_byte_slice(block);
        let typeflag = header.as_old().linkflag[0];
        let size = parse_numeric(&header.as_old().size)?;
        match typeflag {
            b'x' | b'g' | b'L' | b'K' => {
                if size > MAX_SPECIAL {
                    return Err(bad_header("a PAX header or GNU long name over 1 MiB"));
                }
                self.sink = match typeflag {
                    b'x' => Sink::Pax,
                    b'g' => Sink::Global,
                    b'L' => Sink::LongName,
                    _ => Sink::LongLink,
                };
                if typeflag == b'g' {
                    // An entry of its own: what was held goes on.
                    self.pass_block(block.to_vec(), out);
                } else {
                    let total = self.pending.len() as u64 + BLOCK as u64 + size + BLOCK as u64;
                    if total > MAX_PENDING as u64 {
                        return Err(bad_header("too many extended headers before one entry"));
                    }
                    self.pending.extend_from_slice(block);
                    self.route = Route::Hold;
                }
                self.start_data(size, out)
            }
            _ => self.entry(block, name, typeflag, size, out),
        }
    }

    /// A file, directory or link: the PAX records and GNU long name read
    /// before it apply (the long name wins over a PAX path, as in Go).
    fn entry(
        &mut self,
        block: &[u8],
        mut name: String,
        mut typeflag: u8,
        mut size: u64,
        out: &mut Vec<Piece>,
    ) -> Result<(), Reject> {
        if let Some(path) = self.pax_path.take() {
            name = path;
        }
        if let Some(pax_size) = self.pax_size.take() {
            size = pax_size;
        }
        if let Some(long) = self.long_name.take() {
            name = long;
        }
        if typeflag == 0 && name.ends_with('/') {
            typeflag = b'5';
        }
        if typeflag == b'S' {
            return Err(unreadable_archive("it has sparse entries"));
        }
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(unreadable_archive("it has too many entries"));
        }
        // Where dockerd's untar puts it: filepath.Join(dest, filepath.Clean(name)).
        let path = clean_path(&format!("/{name}"));
        let path = path.trim_start_matches('/').to_string();
        for (i, _) in path.match_indices('/') {
            if self.links.contains(&path[..i]) {
                return Err(unreadable_archive(format!(
                    "{path:?} would be written through the link {:?}",
                    &path[..i]
                )));
            }
        }
        if matches!(typeflag, b'1' | b'2') && !path.is_empty() {
            if self.links.len() >= MAX_LINKS {
                return Err(unreadable_archive("it has too many links"));
            }
            self.links.insert(path.clone());
        }
        let header_only = matches!(typeflag, b'1'..=b'6');
        self.sink = Sink::Skip;
        if let Some(file) = TagFile::of(&path) {
            if !matches!(typeflag, b'0' | 0) {
                return Err(unreadable_archive(format!(
                    "its {} is not a regular file",
                    file.name()
                )));
            }
            if !self.seen.insert(file.name()) {
                return Err(unreadable_archive(format!("it has {} twice", file.name())));
            }
            if size > MAX_TAG_FILE {
                return Err(unreadable_archive(format!(
                    "its {} is larger than 1 MiB",
                    file.name()
                )));
            }
            self.sink = Sink::File(file);
            self.held = Some(Held {
                prefix: std::mem::take(&mut self.pending),
                header: block.to_vec(),
            });
            self.route = Route::Drop;
        } else {
            self.pass_block(block.to_vec(), out);
        }
        self.start_data(if header_only { 0 } else { size }, out)
    }

    fn start_data(&mut self, size: u64, out: &mut Vec<Piece>) -> Result<(), Reject> {
        self.captured.clear();
        self.data_left = size;
        self.pad_left = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        if size == 0 {
            self.entry_done(out)?;
        }
        Ok(())
    }

    fn entry_done(&mut self, out: &mut Vec<Piece>) -> Result<(), Reject> {
        let data = std::mem::take(&mut self.captured);
        match std::mem::replace(&mut self.sink, Sink::Skip) {
            Sink::Skip => {}
            Sink::File(file) => {
                let held = self.held.take().expect("a tag file's header is held");
                out.push(Piece::Owned(rewrite(file, held, &data)?));
                self.files.push((file, data));
            }
            Sink::LongName => self.long_name = Some(go_string(&data)),
            Sink::LongLink => {}
            Sink::Pax => {
                // Each PAX header replaces the one before (Go keeps the last).
                let (path, size) = parse_pax(&data)?;
                self.pax_path = path;
                self.pax_size = size;
            }
            Sink::Global => {
                // Returned as an entry of its own: what was pending is dropped.
                parse_pax(&data)?;
                self.pax_path = None;
                self.pax_size = None;
                self.long_name = None;
            }
        }
        Ok(())
    }
}

fn push_input(out: &mut Vec<Piece>, range: std::ops::Range<usize>) {
    if range.is_empty() {
        return;
    }
    if let Some(Piece::Input(last)) = out.last_mut() {
        if last.end == range.start {
            last.end = range.end;
            return;
        }
    }
    out.push(Piece::Input(range));
}

/// A tag file's entry as dockerd gets it: unchanged when it names no tag
/// dockerd would set; else its data without the tags, under its own header
/// with the new size and checksum, or, when extended headers named it (a
/// PAX `path` or `size`, a GNU long name), under a plain USTAR header with
/// its cleaned name (where dockerd's untar puts it either way), the
/// extended headers dropped. Padded to a block.
fn rewrite(file: TagFile, held: Held, data: &[u8]) -> Result<Vec<u8>, Reject> {
    let pad = |bytes: &mut Vec<u8>| {
        let len = bytes.len();
        bytes.resize(len.div_ceil(BLOCK) * BLOCK, 0);
    };
    let Some(stripped) = strip_archive_tags(file, data)? else {
        let mut bytes = held.prefix;
        bytes.extend_from_slice(&held.header);
        bytes.extend_from_slice(data);
        pad(&mut bytes);
        return Ok(bytes);
    };
    let mut header = if held.prefix.is_empty() {
        tar::Header::from_byte_slice(&held.header).clone()
    } else {
        let mut header = tar::Header::new_ustar();
        header
            .set_path(file.name())
            .map_err(|_| bad_header("a tag file name"))?;
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header
    };
    header.set_size(stripped.len() as u64);
    header.set_cksum();
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(&stripped);
    pad(&mut bytes);
    Ok(bytes)
}

/// A PAX header's `path` and `size` (records parsed by `tar::PaxExtensions`;
/// the last of a key wins, as in Go's map). Sparse files are refused: their
/// records rename the entry and change what its data holds.
fn parse_pax(data: &[u8]) -> Result<(Option<String>, Option<u64>), Reject> {
    let mut path = None;
    let mut size = None;
    let mut records = 0;
    for record in tar::PaxExtensions::new(data) {
        let record = record.map_err(|_| bad_header("a malformed PAX record"))?;
        records += 1;
        let key = record.key_bytes();
        if key.starts_with(b"GNU.sparse.") {
            return Err(unreadable_archive("it has sparse entries"));
        }
        match key {
            b"path" => path = Some(String::from_utf8_lossy(record.value_bytes()).into_owned()),
            b"size" => {
                let value = std::str::from_utf8(record.value_bytes())
                    .ok()
                    .and_then(|v| v.parse::<i64>().ok())
                    .and_then(|v| u64::try_from(v).ok())
                    .ok_or_else(|| bad_header("a PAX size that is not a size"))?;
                size = Some(value);
            }
            _ => {}
        }
    }
    // Every byte must belong to a record (the iterator stops at an empty line).
    let lines = data.iter().filter(|&&b| b == b'\n').count();
    if records != lines || !(data.is_empty() || data.ends_with(b"\n")) {
        return Err(bad_header("a malformed PAX header"));
    }
    Ok((path, size))
}

/// Go's `parser.parseString`: up to the first NUL.
fn go_string(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Go's `parseNumeric`: base-256 when the high bit is set, else octal with
/// spaces and NULs trimmed. A negative size is an error in Go too.
fn parse_numeric(field: &[u8]) -> Result<u64, Reject> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        let inv = if field[0] & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &c) in field.iter().enumerate() {
            let mut c = c ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 > 0 {
                return Err(bad_header("a size out of range"));
            }
            x = x << 8 | u64::from(c);
        }
        if x >> 63 > 0 || inv == 0xff {
            return Err(bad_header("a negative size"));
        }
        return Ok(x);
    }
    parse_octal(field).ok_or_else(|| bad_header("a size that is not a number"))
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let is_pad = |b: &u8| *b == b' ' || *b == 0;
    let start = field.iter().position(|b| !is_pad(b)).unwrap_or(field.len());
    let end = field
        .iter()
        .rposition(|b| !is_pad(b))
        .map_or(start, |e| e + 1);
    let trimmed = &field[start..end];
    let digits = &trimmed[..trimmed
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(trimmed.len())];
    if digits.is_empty() {
        return Some(0);
    }
    if !digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    let value = u64::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok()?;
    (value >> 63 == 0).then_some(value)
}

/// Go's `getFormat` checksum test: the unsigned or the signed sum of the
/// block with the checksum field read as spaces.
fn check_checksum(block: &[u8]) -> Result<(), Reject> {
    let stored = parse_octal(&block[148..156]).ok_or_else(|| bad_header("a bad checksum"))?;
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    if stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed) {
        Ok(())
    } else {
        Err(bad_header("a header checksum that does not match"))
    }
}

fn bad_header(why: &str) -> Reject {
    unreadable_archive(format!("it is not a tar archive dockerd can read ({why})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::policy::images::RULE;

    const MANIFEST: &[u8] = br#"[{"Config":"c.json","RepoTags":["app:latest"],"Layers":[]}]"#;

    fn header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    fn file(tar: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut h = header(name, tar::EntryType::Regular, data.len() as u64);
        tar.append_data(&mut h, name, data).unwrap();
    }

    /// The archive as dockerd gets it, through the scanner in chunks.
    fn pass(archive: &[u8], chunk: usize) -> Result<(Scanner, Vec<u8>, Option<usize>), Reject> {
        let mut scanner = Scanner::new();
        let mut end = None;
        let mut out = Vec::new();
        for (n, piece) in archive.chunks(chunk).enumerate() {
            let mut pieces = Vec::new();
            let step = scanner.feed(piece, &mut pieces)?;
            for p in pieces {
                match p {
                    Piece::Input(r) => out.extend_from_slice(&piece[r]),
                    Piece::Owned(b) => out.extend_from_slice(&b),
                }
            }
            if let Step::End(at) = step {
                end = Some(n * chunk + at);
                out.extend_from_slice(&piece[at..]);
                break;
            }
        }
        if end.is_none() {
            scanner.finish()?;
        }
        Ok((scanner, out, end))
    }

    fn scan(archive: &[u8], chunk: usize) -> Result<(Vec<String>, Option<usize>), Reject> {
        let (scanner, _, end) = pass(archive, chunk)?;
        Ok((scanner.tags()?, end))
    }

    /// Each entry's path and data, as the tar crate reads the archive.
    fn entries(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut tar = tar::Archive::new(archive);
        tar.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                (path, data)
            })
            .collect()
    }

    fn manifest_of(archive: &[u8]) -> serde_json::Value {
        let (_, data) = entries(archive)
            .into_iter()
            .find(|(p, _)| p == "manifest.json")
            .unwrap();
        serde_json::from_slice(&data).unwrap()
    }

    #[test]
    fn the_manifest_goes_on_without_its_tags_and_everything_else_unchanged() {
        let short = br#"[{"Config":"c.json","RepoTags":[],"Layers":[]}]"#;
        let long = format!(
            r#"[{{"Config":"c.json","RepoTags":["{}:latest","b:2"],"Layers":["abc/layer.tar"]}},{{"Config":"d.json","RepoTags":["two:1"],"Layers":[]}}]"#,
            "x".repeat(700)
        );
        // Re-serialised larger (`1e2` is written `100.0`), across a block.
        let grows = format!(
            r#"[{{"Config":"c.json","RepoTags":["a:1"],"Layers":[],"Extra":[{}]}}]"#,
            vec!["1e2"; 200].join(",")
        );
        for manifest in [MANIFEST, long.as_bytes(), short, grows.as_bytes()] {
            let mut tar = tar::Builder::new(Vec::new());
            file(&mut tar, "abc/layer.tar", &[7; 1500]);
            file(&mut tar, "manifest.json", manifest);
            file(&mut tar, "c.json", b"{}");
            let archive = tar.into_inner().unwrap();
            for chunk in [1, 100, 512, 4096, archive.len()] {
                let (scanner, out, end) = pass(&archive, chunk).unwrap();
                assert_eq!(end, Some(archive.len()));
                let tags: Vec<Vec<String>> = scanner.manifest().unwrap().unwrap();
                let original: serde_json::Value = serde_json::from_slice(manifest).unwrap();
                assert_eq!(tags.len(), original.as_array().unwrap().len());
                // The tar crate checks every header's checksum.
                let (before, after) = (entries(&archive), entries(&out));
                assert_eq!(before.len(), after.len());
                for ((p1, d1), (p2, d2)) in before.iter().zip(&after) {
                    assert_eq!(p1, p2);
                    if p1 != "manifest.json" {
                        assert_eq!(d1, d2, "{p1} unchanged");
                    }
                }
                let mut expected = original.clone();
                for item in expected
                    .as_array_mut()
                    .unwrap()
                    .iter_mut()
                    .filter(|_| manifest != short)
                {
                    item.as_object_mut().unwrap().remove("RepoTags");
                }
                assert_eq!(manifest_of(&out), expected, "chunk {chunk}");
                if manifest == grows.as_bytes() {
                    assert!(out.len() > archive.len(), "the manifest entry grew a block");
                }
                if manifest == short {
                    assert!(out == archive, "nothing to take out: byte-identical");
                } else {
                    // Only the manifest entry changed: the bytes before it are identical.
                    assert!(out[..2048] == archive[..2048]);
                    assert_ne!(out.len(), 0);
                }
            }
        }
        // Two images, each with its own tags, in order.
        let mut tar = tar::Builder::new(Vec::new());
        file(&mut tar, "manifest.json", long.as_bytes());
        let (scanner, out, _) = pass(&tar.into_inner().unwrap(), 333).unwrap();
        assert_eq!(
            scanner.manifest().unwrap().unwrap(),
            vec![
                vec![format!("{}:latest", "x".repeat(700)), "b:2".into()],
                vec!["two:1".to_string()]
            ]
        );
        assert_eq!(
            scan(&out, 512).unwrap().0,
            Vec::<String>::new(),
            "dockerd sees no tag"
        );
    }

    #[test]
    fn a_manifest_named_by_pax_or_gnu_headers_is_rewritten_under_a_plain_header() {
        // PAX path and size.
        let mut tar = tar::Builder::new(Vec::new());
        let size = MANIFEST.len().to_string();
        tar.append_pax_extensions([("path", &b"manifest.json"[..]), ("size", size.as_bytes())])
            .unwrap();
        let mut h = header("innocent.txt", tar::EntryType::Regular, 0);
        h.set_size(0);
        h.set_cksum();
        // The header says 0 bytes, PAX says the real size: write the data raw.
        let mut raw = tar.into_inner().unwrap();
        raw.truncate(raw.len() - 1024); // the end marker
        raw.extend_from_slice(h.as_bytes());
        raw.extend_from_slice(MANIFEST);
        raw.resize(raw.len().div_ceil(512) * 512, 0);
        let mut more = tar::Builder::new(Vec::new());
        file(&mut more, "c.json", b"{}");
        raw.extend(more.into_inner().unwrap());
        let (_, out, _) = pass(&raw, 200).unwrap();
        assert_eq!(
            manifest_of(&out),
            serde_json::json!([{"Config":"c.json","Layers":[]}])
        );
        assert_eq!(entries(&out).len(), 2);
        assert_eq!(scan(&out, 512).unwrap().0, Vec::<String>::new());

        // GNU long name.
        let mut tar = tar::Builder::new(Vec::new());
        let long = b"manifest.json\0";
        let mut l = tar::Header::new_gnu();
        l.set_path("././@LongLink").unwrap();
        l.set_entry_type(tar::EntryType::GNULongName);
        l.set_size(long.len() as u64);
        l.set_cksum();
        tar.append(&l, &long[..]).unwrap();
        let h = header(
            "innocent.txt",
            tar::EntryType::Regular,
            MANIFEST.len() as u64,
        );
        tar.append(&h, MANIFEST).unwrap();
        let (_, out, _) = pass(&tar.into_inner().unwrap(), 100).unwrap();
        assert_eq!(
            manifest_of(&out),
            serde_json::json!([{"Config":"c.json","Layers":[]}])
        );
        assert_eq!(entries(&out).len(), 1);

        // Extended headers before another entry pass unchanged.
        let mut tar = tar::Builder::new(Vec::new());
        tar.append_pax_extensions([("path", &b"some/long/layer.tar"[..])])
            .unwrap();
        let h = header("layer.tar", tar::EntryType::Regular, 3);
        tar.append(&h, &b"abc"[..]).unwrap();
        let archive = tar.into_inner().unwrap();
        assert!(pass(&archive, 77).unwrap().1 == archive);
    }

    #[test]
    fn an_oci_layout_and_its_index_entries_are_kept_and_pass_unchanged() {
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        let index = br#"{"manifests":[{"digest":"sha256:aa","annotations":{"io.containerd.image.name":"docker.io/library/app:1"}},{"digest":"sha256:bb"}]}"#;
        let mut tar = tar::Builder::new(Vec::new());
        file(&mut tar, "blobs/sha256/aa", b"{}");
        file(&mut tar, "oci-layout", layout);
        file(&mut tar, "index.json", index);
        let archive = tar.into_inner().unwrap();
        let (scanner, out, _) = pass(&archive, 100).unwrap();
        assert!(scanner.is_oci_layout().unwrap());
        assert_eq!(
            scanner.index().unwrap().unwrap(),
            [vec!["docker.io/library/app:1".to_string()], vec![]]
        );
        assert!(scanner.manifest().unwrap().is_none());
        let out_entries = entries(&out);
        let (_, kept) = out_entries.iter().find(|(p, _)| p == "oci-layout").unwrap();
        assert_eq!(kept, layout);
        let (_, stripped) = out_entries.iter().find(|(p, _)| p == "index.json").unwrap();
        let stripped: serde_json::Value = serde_json::from_slice(stripped).unwrap();
        assert_eq!(
            stripped,
            serde_json::json!({"manifests":[{"digest":"sha256:aa","annotations":{}},{"digest":"sha256:bb"}]})
        );

        // Without a version the containerd store reads manifest.json.
        let mut tar = tar::Builder::new(Vec::new());
        file(&mut tar, "oci-layout", b"{}");
        let (scanner, _, _) = pass(&tar.into_inner().unwrap(), 512).unwrap();
        assert!(!scanner.is_oci_layout().unwrap());
        assert!(scanner.index().unwrap().is_none());

        // Two of them: the proxy cannot tell which containerd keeps.
        let mut tar = tar::Builder::new(Vec::new());
        file(&mut tar, "oci-layout", layout);
        file(&mut tar, "./oci-layout", b"{}");
        assert!(pass(&tar.into_inner().unwrap(), 512).is_err());
    }

    #[test]
    fn index_names_are_taken_out_and_repositories_passes() {
        let mut tar = tar::Builder::new(Vec::new());
        file(&mut tar, "repositories", br#"{"app":{"v1":"x"}}"#);
        file(
            &mut tar,
            "index.json",
            br#"{"manifests":[{"annotations":{"io.containerd.image.name":"b:2","x":"y"}}]}"#,
        );
        let archive = tar.into_inner().unwrap();
        let (scanner, out, _) = pass(&archive, 64).unwrap();
        assert_eq!(scanner.tags_of(TagFile::Repositories).unwrap(), ["app:v1"]);
        assert!(scanner.manifest().unwrap().is_none());
        assert_eq!(scan(&out, 512).unwrap().0, ["app:v1"]);
        let (_, index) = entries(&out)
            .into_iter()
            .find(|(p, _)| p == "index.json")
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&index).unwrap(),
            serde_json::json!({"manifests":[{"annotations":{"x":"y"}}]})
        );
    }

    fn saved() -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        file(&mut tar, "abc/layer.tar", &[7; 1500]);
        file(&mut tar, "c.json", b"{}");
        file(&mut tar, "manifest.json", MANIFEST);
        tar.into_inner().unwrap()
    }

    #[test]
    fn a_docker_save_archive_yields_its_tags_and_its_end_in_any_chunking() {
        let archive = saved();
        for chunk in [1, 7, 511, 512, 513, 4096, archive.len()] {
            let (tags, end) = scan(&archive, chunk).unwrap();
            assert_eq!(tags, ["app:latest"], "chunk {chunk}");
            assert_eq!(
                end,
                Some(archive.len()),
                "chunk {chunk}: the marker ends the archive"
            );
        }
    }

    #[test]
    fn without_an_end_marker_the_archive_ends_with_the_body() {
        let archive = saved();
        let cut = &archive[..archive.len() - 1024];
        assert_eq!(scan(cut, 100).unwrap(), (vec!["app:latest".into()], None));
        // One zero block then the end of the body: Go ends cleanly too.
        let one = &archive[..archive.len() - 512];
        assert_eq!(scan(one, 100).unwrap().1, None);
    }

    #[test]
    fn entries_after_the_end_marker_are_not_read() {
        let mut archive = saved();
        let end = archive.len();
        let mut more = tar::Builder::new(Vec::new());
        file(&mut more, "repositories", br#"{"evil":{"latest":"x"}}"#);
        archive.extend(more.into_inner().unwrap());
        assert_eq!(
            scan(&archive, 300).unwrap(),
            (vec!["app:latest".into()], Some(end))
        );
    }

    #[test]
    fn names_are_read_as_dockerd_s_untar_places_them() {
        for name in [
            "./manifest.json",
            "/manifest.json",
            "x/../manifest.json",
            "a/./../manifest.json",
        ] {
            let mut tar = tar::Builder::new(Vec::new());
            let mut h = header(
                "placeholder",
                tar::EntryType::Regular,
                MANIFEST.len() as u64,
            );
            // Bypass the tar crate's own path checks: write the raw name.
            h.as_old_mut().name = [0; 100];
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            tar.append(&h, MANIFEST).unwrap();
            let archive = tar.into_inner().unwrap();
            assert_eq!(scan(&archive, 64).unwrap().0, ["app:latest"], "{name}");
        }
    }

    #[test]
    fn a_pax_path_and_a_gnu_long_name_rename_the_entry() {
        // PAX: a harmless name, with a `path` record saying manifest.json.
        let mut tar = tar::Builder::new(Vec::new());
        tar.append_pax_extensions([("path", &b"manifest.json"[..])])
            .unwrap();
        let mut h = header(
            "innocent.txt",
            tar::EntryType::Regular,
            MANIFEST.len() as u64,
        );
        tar.append(&h, MANIFEST).unwrap();
        let pax = tar.into_inner().unwrap();
        assert_eq!(scan(&pax, 100).unwrap().0, ["app:latest"]);

        // GNU long name: an `L` entry names the next one.
        let mut tar = tar::Builder::new(Vec::new());
        let long = b"manifest.json\0";
        let mut l = tar::Header::new_gnu();
        l.set_path("././@LongLink").unwrap();
        l.set_entry_type(tar::EntryType::GNULongName);
        l.set_size(long.len() as u64);
        l.set_cksum();
        tar.append(&l, &long[..]).unwrap();
        h = header(
            "innocent.txt",
            tar::EntryType::Regular,
            MANIFEST.len() as u64,
        );
        tar.append(&h, MANIFEST).unwrap();
        assert_eq!(
            scan(&tar.into_inner().unwrap(), 100).unwrap().0,
            ["app:latest"]
        );

        // A USTAR prefix joins the name.
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = header("x", tar::EntryType::Regular, MANIFEST.len() as u64);
        h.as_ustar_mut().unwrap().prefix[..4].copy_from_slice(b"a/..");
        h.as_old_mut().name = [0; 100];
        h.as_old_mut().name[..13].copy_from_slice(b"manifest.json");
        h.set_cksum();
        tar.append(&h, MANIFEST).unwrap();
        assert_eq!(
            scan(&tar.into_inner().unwrap(), 100).unwrap().0,
            ["app:latest"]
        );
    }

    fn refused(archive: &[u8]) -> String {
        let reject = scan(archive, 97).unwrap_err();
        assert_eq!(reject.rule, RULE);
        reject.message
    }

    #[test]
    fn hostile_archives_are_refused() {
        // Two manifests: dockerd keeps the last.
        let mut tar = tar::Builder::new(Vec::new());
        file(&mut tar, "manifest.json", MANIFEST);
        file(&mut tar, "./manifest.json", b"[]");
        assert!(refused(&tar.into_inner().unwrap()).contains("twice"));

        // A symlink named manifest.json: dockerd follows it.
        let mut tar = tar::Builder::new(Vec::new());
        file(&mut tar, "real.json", MANIFEST);
        let mut h = header("manifest.json", tar::EntryType::Symlink, 0);
        tar.append_link(&mut h, "manifest.json", "real.json")
            .unwrap();
        assert!(refused(&tar.into_inner().unwrap()).contains("not a regular file"));

        // A hard link named repositories.
        let mut tar = tar::Builder::new(Vec::new());
        file(&mut tar, "r", b"{}");
        let mut h = header("repositories", tar::EntryType::Link, 0);
        tar.append_link(&mut h, "repositories", "r").unwrap();
        assert!(refused(&tar.into_inner().unwrap()).contains("not a regular file"));

        // A file written through a symlinked directory onto the root.
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = header("d", tar::EntryType::Symlink, 0);
        tar.append_link(&mut h, "d", ".").unwrap();
        file(&mut tar, "d/manifest.json", MANIFEST);
        assert!(refused(&tar.into_inner().unwrap()).contains("through the link"));

        // Too large.
        let mut tar = tar::Builder::new(Vec::new());
        file(
            &mut tar,
            "index.json",
            &vec![b' '; (MAX_TAG_FILE + 1) as usize],
        );
        assert!(refused(&tar.into_inner().unwrap()).contains("larger than 1 MiB"));

        // Truncated in the middle of an entry.
        let archive = saved();
        assert!(refused(&archive[..1000]).contains("truncated"));

        // A broken checksum.
        let mut archive = saved();
        archive[0] ^= 1;
        assert!(refused(&archive).contains("checksum"));

        // Tags that are not strings.
        let mut tar = tar::Builder::new(Vec::new());
        file(&mut tar, "manifest.json", br#"[{"RepoTags":{"a":1}}]"#);
        assert!(refused(&tar.into_inner().unwrap()).contains("manifest.json"));
    }

    #[test]
    fn legacy_repositories_and_oci_index_tags_are_read_too() {
        let mut tar = tar::Builder::new(Vec::new());
        file(&mut tar, "repositories", br#"{"app":{"v1":"x"}}"#);
        file(
            &mut tar,
            "index.json",
            br#"{"manifests":[{"annotations":{"io.containerd.image.name":"b:2"}}]}"#,
        );
        assert_eq!(
            scan(&tar.into_inner().unwrap(), 50).unwrap().0,
            ["app:v1", "b:2"]
        );
    }

    #[test]
    fn headers_parse_as_go_parses_them() {
        assert_eq!(parse_octal(b"0000644\0"), Some(0o644));
        assert_eq!(parse_octal(b"  17 \0\0"), Some(0o17));
        assert_eq!(parse_octal(b"\0\0\0"), Some(0));
        assert_eq!(
            parse_octal(b"1\x002"),
            Some(1),
            "Go cuts at the NUL after trimming"
        );
        assert_eq!(parse_octal(b"+17"), None);
        assert_eq!(parse_octal(b"89"), None);
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 5;
        assert_eq!(parse_numeric(&big).unwrap(), 5);
        big[0] = 0xff;
        assert!(parse_numeric(&big).is_err(), "negative");
    }

    #[test]
    fn compressions_are_told_from_the_first_bytes_as_dockerd_does() {
        assert_eq!(detect(&[0x1f, 0x8b, 0x08, 0]), Compression::Gzip);
        assert_eq!(detect(&[0x1f, 0x8b, 0x07]), Compression::None);
        assert_eq!(detect(b"BZh91AY"), Compression::Other("bzip2"));
        assert_eq!(
            detect(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            Compression::Other("xz")
        );
        assert_eq!(
            detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Other("zstd")
        );
        assert_eq!(
            detect(&[0x5e, 0x2a, 0x4d, 0x18]),
            Compression::Other("zstd")
        );
        assert_eq!(detect(b"manifest.json"), Compression::None);
    }
}
