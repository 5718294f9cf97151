//! `docker pull NAME:TAG` in standalone owner mode: the pure half.
//!
//! dockerd's pull sets its tag itself when the download ends, which can be
//! minutes after the proxy checked the tag: meanwhile another owner may
//! take it, or a tag checked as free may be moved. So the proxy resolves the
//! tag to a digest first (`GET /distribution/{name}/json`, asked by the
//! proxy itself; the tenant's distribution family stays off), has dockerd
//! pull `NAME@DIGEST` (a pull by digest sets no tag), checks the tag again
//! once the image is there and sets it itself (`POST /images/{id}/tag`), as
//! for builds and loads ([`super::images`]).
//!
//! The client still sees the messages of a pull by tag: the `Pulling from`
//! line names the tag, and the closing `Status:` line is the proxy's,
//! naming the tag (`Downloaded newer image for app:1` when the tag moved,
//! `Image is up to date for app:1` when it already pointed to that image),
//! or an error message when the tag was taken meanwhile.
//!
//! A pull needs the registry twice (the digest, then the pull), and a
//! registry that cannot be asked fails the pull: the proxy never falls back
//! to an unchecked pull by tag. Registries that count manifest fetches (the
//! Docker Hub's rate limit) count such a pull twice.

#![forbid(unsafe_code)]

use http::StatusCode;
use serde_json::Value;

use super::images::{Tag, Verdict, RULE};
use super::Reject;
use crate::proxy::route::Route;

/// The digest of the manifest (or index) a tag points to, from dockerd's
/// `GET /distribution/{name}/json` answer (dockerd 20.10 to 28 answer
/// `{"Descriptor":{"mediaType":..,"digest":"sha256:..","size":..},"Platforms":[..]}`).
pub fn descriptor_digest(answer: &[u8]) -> Option<String> {
    let answer: Value = serde_json::from_slice(answer).ok()?;
    let digest = answer.pointer("/Descriptor/digest")?.as_str()?;
    is_digest(digest).then(|| digest.to_string())
}

/// `algorithm:hex` as go-digest validates it, for the algorithms it knows.
fn is_digest(text: &str) -> bool {
    let Some((algorithm, hex)) = text.split_once(':') else {
        return false;
    };
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == length
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `name@digest`: the reference dockerd pulls, and by which the proxy then
/// finds the pulled image.
pub fn digest_reference(tag: &Tag, digest: &str) -> String {
    format!("{}@{digest}", tag.name)
}

/// Turns the pull of `tag` into a pull of `digest`: `fromImage` names the
/// checked repository by digest and the `tag` parameter goes (dockerd reads
/// a digest there too, and a tag there would win over the digest). Every
/// other parameter (`platform`) stays.
pub fn by_digest(route: &mut Route, tag: &Tag, digest: &str) {
    route.query.0.retain(|(k, _)| k != "tag");
    route.query.set("fromImage", &digest_reference(tag, digest));
}

/// What becomes of one message of dockerd's answer to a pull by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Passed on as it came.
    Pass,
    /// `{"status":"Pulling from REPO","id":"NAME@DIGEST"}`: a pull by tag
    /// names the tag there (the CLI prints `TAG: Pulling from REPO`).
    Rewritten(String),
    /// dockerd's closing `Status: ... for NAME@DIGEST`: the proxy writes its
    /// own once the tag is set.
    Withheld,
}

/// Reads one message (one line) of dockerd's answer to the pull of `digest`.
pub fn message(line: &[u8], tag: &Tag, digest: &str) -> Message {
    let Ok(Value::Object(message)) = serde_json::from_slice::<Value>(line) else {
        return Message::Pass;
    };
    let text = |key: &str| message.get(key).and_then(Value::as_str);
    let Some(status) = text("status") else {
        return Message::Pass;
    };
    let names_digest = |s: &str| s == digest || s.ends_with(&format!("@{digest}"));
    if status.starts_with("Status: ") && names_digest(status) {
        return Message::Withheld;
    }
    if status.starts_with("Pulling from ")
        && message.len() == 2
        && text("id").is_some_and(names_digest)
    {
        // dockerd's own field order.
        let rewritten = format!(
            "{{\"status\":{},\"id\":{}}}\r\n",
            Value::from(status),
            Value::from(tag.tag.as_str())
        );
        return Message::Rewritten(rewritten);
    }
    Message::Pass
}

/// What the proxy does once dockerd pulled the image `pulled`: the tag's
/// verdict now (as a pull: a shared image may be refreshed) and the image it
/// points to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Another owner holds the tag: it stays where it is.
    Refuse,
    /// Point the tag at the pulled image (`moves`: it pointed elsewhere or
    /// nowhere; otherwise nothing is asked of dockerd), and remember it as
    /// set by this proxy (`record`: not for the refresh of a shared image).
    Tag { moves: bool, record: bool },
}

pub fn end(verdict: Verdict, now: Option<&str>, pulled: &str) -> End {
    let moves = now != Some(pulled);
    match verdict {
        Verdict::Foreign => End::Refuse,
        Verdict::Refresh => End::Tag {
            moves,
            record: false,
        },
        Verdict::Free | Verdict::Owned => End::Tag {
            moves,
            record: true,
        },
    }
}

/// The closing line of a pull by tag, as dockerd writes it (`writeStatus`):
/// whether the tag moved, and the tag as the CLI prints it.
pub fn status(tag: &Tag, moved: bool) -> String {
    let what = if moved {
        "Downloaded newer image"
    } else {
        "Image is up to date"
    };
    format!("Status: {what} for {}", tag.familiar())
}

/// dockerd could not resolve the tag (the registry is unreachable, the tag
/// does not exist, credentials are missing): its status and message, said
/// to be about the digest the proxy needs. Unauthorized stays 401, so the
/// CLI can ask for credentials and try again.
pub fn unresolved(tag: &Tag, status: StatusCode, dockerd_said: &str) -> Reject {
    let status = if status.is_client_error() || status.is_server_error() {
        status
    } else {
        StatusCode::BAD_GATEWAY
    };
    Reject {
        status,
        rule: RULE,
        message: format!(
            "dindbox: could not resolve {} to a digest, which the proxy pulls by so that the tag moves only once checked: {dockerd_said}",
            tag.familiar()
        ),
    }
}

#[cfg(test)]
mod tests {
    use http::Method;
    use serde_json::json;

    use super::*;
    use crate::proxy::policy::images::tag_of;
    use crate::proxy::route::route;

    const DIGEST: &str = "sha256:001e79f411095776b400fb913e8a631e9dc46cc22b2b101d2d241b2325d3f815";

    fn tag(text: &str) -> Tag {
        tag_of(text).unwrap()
    }

    #[test]
    fn the_digest_is_read_from_dockerds_distribution_answer() {
        // dockerd 20.10 and 28.5, against a registry on 127.0.0.1:5000.
        let answer = json!({"Descriptor": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": DIGEST, "size": 527}, "Platforms": [{"architecture": "amd64", "os": "linux"}]});
        assert_eq!(
            descriptor_digest(answer.to_string().as_bytes()).as_deref(),
            Some(DIGEST)
        );
        for bad in [
            json!({"Descriptor": {"digest": "sha256:abc"}}),
            json!({"Descriptor": {"digest": DIGEST.to_uppercase()}}),
            json!({"Descriptor": {"digest": format!("md5:{}", &DIGEST[7..])}}),
            json!({"Descriptor": {"digest": format!("{DIGEST}&tag=x")}}),
            json!({"Descriptor": {}}),
            json!({"message": "manifest unknown"}),
        ] {
            assert_eq!(descriptor_digest(bad.to_string().as_bytes()), None, "{bad}");
        }
        assert_eq!(descriptor_digest(b"not json"), None);
    }

    #[test]
    fn a_pull_by_tag_goes_to_dockerd_by_digest_with_its_other_parameters() {
        let mut r = route(
            &Method::POST,
            &"/v1.41/images/create?fromImage=127.0.0.1:5000/bb&tag=1&platform=linux%2Famd64&tag=2"
                .parse()
                .unwrap(),
        )
        .unwrap();
        by_digest(&mut r, &tag("127.0.0.1:5000/bb:1"), DIGEST);
        assert_eq!(
            r.target(),
            format!("/v1.41/images/create?fromImage=127.0.0.1%3A5000%2Fbb%40sha256%3A{}&platform=linux%2Famd64", &DIGEST[7..])
        );
        let mut r = route(
            &Method::POST,
            &"/v1.41/images/create?fromImage=busybox:1.36"
                .parse()
                .unwrap(),
        )
        .unwrap();
        by_digest(&mut r, &tag("busybox:1.36"), DIGEST);
        assert_eq!(
            r.query.first("fromImage"),
            Some(&*format!("docker.io/library/busybox@{DIGEST}"))
        );
        assert_eq!(r.query.first("tag"), None);
    }

    #[test]
    fn the_answer_reads_as_a_pull_by_tag() {
        let t = tag("127.0.0.1:5000/bb:1");
        let line = |v: Value| v.to_string().into_bytes();
        // dockerd 20.10 and 28.5 (graphdriver and containerd stores).
        let from =
            json!({"status": "Pulling from bb", "id": format!("127.0.0.1:5000/bb@{DIGEST}")});
        assert_eq!(
            message(&line(from), &t, DIGEST),
            Message::Rewritten("{\"status\":\"Pulling from bb\",\"id\":\"1\"}\r\n".into())
        );
        for end in ["Downloaded newer image", "Image is up to date"] {
            let status = json!({"status": format!("Status: {end} for 127.0.0.1:5000/bb@{DIGEST}")});
            assert_eq!(message(&line(status), &t, DIGEST), Message::Withheld);
        }
        for other in [
            json!({"status": format!("Digest: {DIGEST}")}),
            json!({"status": "Pulling fs layer", "progressDetail": {}, "id": "1cde3b27ce98"}),
            json!({"status": "Pulling from bb", "id": "other@sha256:00"}),
            json!({"status": "Status: Downloaded newer image for bb:1"}),
            json!({"errorDetail": {"message": "x"}, "error": "x"}),
            json!("a string"),
        ] {
            assert_eq!(
                message(&line(other.clone()), &t, DIGEST),
                Message::Pass,
                "{other}"
            );
        }
        assert_eq!(message(b"{\"status\":", &t, DIGEST), Message::Pass);
        assert_eq!(
            status(&t, true),
            "Status: Downloaded newer image for 127.0.0.1:5000/bb:1"
        );
        assert_eq!(
            status(&tag("busybox"), false),
            "Status: Image is up to date for busybox:latest"
        );
    }

    #[test]
    fn the_pulled_image_is_tagged_only_when_the_tag_is_still_free_or_the_owners() {
        let pulled = "sha256:1";
        assert_eq!(end(Verdict::Foreign, Some("sha256:2"), pulled), End::Refuse);
        assert_eq!(end(Verdict::Foreign, Some(pulled), pulled), End::Refuse);
        assert_eq!(
            end(Verdict::Free, None, pulled),
            End::Tag {
                moves: true,
                record: true
            }
        );
        assert_eq!(
            end(Verdict::Owned, Some("sha256:2"), pulled),
            End::Tag {
                moves: true,
                record: true
            }
        );
        assert_eq!(
            end(Verdict::Owned, Some(pulled), pulled),
            End::Tag {
                moves: false,
                record: true
            }
        );
        assert_eq!(
            end(Verdict::Refresh, Some("sha256:2"), pulled),
            End::Tag {
                moves: true,
                record: false
            },
            "a shared image refreshed from its own repository is not the puller's"
        );
    }

    #[test]
    fn an_unresolved_tag_keeps_dockerds_status_and_says_why() {
        let r = unresolved(
            &tag("127.0.0.1:5001/bb:1"),
            StatusCode::INTERNAL_SERVER_ERROR,
            "Get \"http://127.0.0.1:5001/v2/\": dial tcp 127.0.0.1:5001: connect: connection refused",
        );
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(r
            .message
            .starts_with("dindbox: could not resolve 127.0.0.1:5001/bb:1 to a digest"));
        assert!(r.message.ends_with("connection refused"));
        assert_eq!(
            unresolved(&tag("bb"), StatusCode::UNAUTHORIZED, "x").status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            unresolved(&tag("bb"), StatusCode::OK, "x").status,
            StatusCode::BAD_GATEWAY
        );
    }
}
