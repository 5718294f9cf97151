//! Paths as Go's `path.Clean` (and `filepath.Clean` on Linux) leaves them:
//! dockerd cleans a working directory before it reaches runc, so the proxy
//! judges the cleaned path, not the spelling it was sent.

#![forbid(unsafe_code)]

/// Go's `path.Clean`: the shortest equivalent path by lexical processing
/// (repeated slashes, `.` and `..` removed; `..` at the root stays at the root).
pub fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let bytes = path.as_bytes();
    let rooted = bytes[0] == b'/';
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    // Where a `..` may no longer remove an element.
    let mut dotdot = 0;
    if rooted {
        out.push(b'/');
        dotdot = 1;
    }
    let mut r = 0;
    while r < bytes.len() {
        let rest = &bytes[r..];
        let ends_at = |n: usize| rest.len() == n || rest[n] == b'/';
        if rest[0] == b'/' || (rest[0] == b'.' && ends_at(1)) {
            // An empty element or `.`.
            r += 1;
        } else if rest.starts_with(b"..") && ends_at(2) {
            r += 2;
            if out.len() > dotdot {
                // Back up to the previous separator (or to `dotdot`).
                let mut w = out.len() - 1;
                while w > dotdot && out[w] != b'/' {
                    w -= 1;
                }
                out.truncate(w);
            } else if !rooted {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(b"..");
                dotdot = out.len();
            }
        } else {
            if out.len() != usize::from(rooted) {
                out.push(b'/');
            }
            let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
            out.extend_from_slice(&rest[..end]);
            r += end;
        }
    }
    if out.is_empty() {
        return ".".into();
    }
    String::from_utf8(out).expect("cleaning splits only at ASCII slashes")
}

#[cfg(test)]
mod tests {
    use super::clean_path;

    #[test]
    fn cleans_like_go() {
        // From Go's path/path_test.go cleantests.
        for (input, want) in [
            ("", "."),
            ("abc", "abc"),
            ("abc/def", "abc/def"),
            ("a/b/c", "a/b/c"),
            (".", "."),
            ("..", ".."),
            ("../..", "../.."),
            ("../../abc", "../../abc"),
            ("/abc", "/abc"),
            ("/", "/"),
            ("abc/", "abc"),
            ("abc/def/", "abc/def"),
            ("a/b/c/", "a/b/c"),
            ("./", "."),
            ("../", ".."),
            ("../../", "../.."),
            ("/abc/", "/abc"),
            ("abc//def//ghi", "abc/def/ghi"),
            ("//abc", "/abc"),
            ("///abc", "/abc"),
            ("//abc//", "/abc"),
            ("abc//", "abc"),
            ("abc/./def", "abc/def"),
            ("/./abc/def", "/abc/def"),
            ("abc/.", "abc"),
            ("abc/def/ghi/../jkl", "abc/def/jkl"),
            ("abc/def/../ghi/../jkl", "abc/jkl"),
            ("abc/def/..", "abc"),
            ("abc/def/../..", "."),
            ("/abc/def/../..", "/"),
            ("abc/def/../../..", ".."),
            ("/abc/def/../../..", "/"),
            ("abc/def/../../../ghi/jkl/../../../mno", "../../mno"),
            ("abc/./../def", "def"),
            ("abc//./../def", "def"),
            ("abc/../../././../def", "../../def"),
        ] {
            assert_eq!(clean_path(input), want, "Clean({input:?})");
        }
    }

    #[test]
    fn the_review_s_working_directories_clean_to_proc() {
        for dir in [
            "//proc/self/fd/7",
            "/./proc/self/fd/7",
            "/x/../proc/self/fd/7",
            "/../proc/self/fd/7",
        ] {
            assert_eq!(clean_path(dir), "/proc/self/fd/7", "{dir}");
        }
    }
}
