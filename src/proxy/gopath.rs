//! Paths as Go's `path.Clean` (and so `filepath.Clean` on Linux) reads them:
//! dockerd cleans a `WorkingDir` before it uses it, so a check on the raw
//! string can be walked around with `//proc`, `/./proc` or `/x/../proc`.

#![forbid(unsafe_code)]

/// Go's `path.Clean`: the shortest lexically equivalent path. Repeated and
/// trailing slashes go, `.` goes, `..` removes the element before it (and
/// at the root, itself); an empty result is `.` (or `/` when rooted).
pub fn clean_path(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut kept: Vec<&str> = Vec::new();
    for element in p.split('/') {
        match element {
            "" | "." => {}
            ".." => match kept.last() {
                Some(&last) if last != ".." => {
                    kept.pop();
                }
                // `..` at the root is the root; a relative path keeps it.
                _ if rooted => {}
                _ => kept.push(".."),
            },
            name => kept.push(name),
        }
    }
    match (rooted, kept.is_empty()) {
        (true, _) => format!("/{}", kept.join("/")),
        (false, true) => ".".to_string(),
        (false, false) => kept.join("/"),
    }
}

#[cfg(test)]
mod tests {
    use super::clean_path;

    #[test]
    fn matches_go_path_clean_examples() {
        // The examples of Go's path.Clean documentation and tests.
        for (input, want) in [
            ("", "."),
            ("a/c", "a/c"),
            ("a//c", "a/c"),
            ("a/c/.", "a/c"),
            ("a/c/b/..", "a/c"),
            ("/../a/c", "/a/c"),
            ("/../a/b/../././/c", "/a/c"),
            ("abc/", "abc"),
            ("/", "/"),
            ("//", "/"),
            (".", "."),
            ("..", ".."),
            ("../..", "../.."),
            ("../../abc", "../../abc"),
            ("abc/../..", ".."),
            ("abc/def/../../..", ".."),
            ("a/../../b", "../b"),
            ("/abc/def/../../..", "/"),
            ("...", "..."),
            ("a/.../b", "a/.../b"),
        ] {
            assert_eq!(clean_path(input), want, "clean_path({input:?})");
        }
    }

    #[test]
    fn the_proc_spellings_of_issue_11_clean_to_proc() {
        for dir in [
            "//proc/self/fd/7",
            "/./proc/self/fd/7",
            "/x/../proc/self/fd/7",
        ] {
            assert_eq!(clean_path(dir), "/proc/self/fd/7", "{dir:?}");
        }
        assert_eq!(clean_path("/proc/../../proc/"), "/proc");
    }
}
