//! Following one `docker build` to its end.
//!
//! A build's outcome is what the daemon says and what it leaves under the tag, not whether the
//! client read the whole response cleanly: bollard's JSON-line decoder can fail at the very end
//! of a build's response ("bytes remaining on stream") when the last read begins between the
//! `\r` and the `\n` of a line, after the daemon has finished and tagged the image. So a broken
//! stream is followed by a look at the tag, and only an error the daemon reported
//! (`errorDetail`) or a tag that did not change fails the build. A broken stream with the tag
//! unchanged is [`ImageError::BuildInterrupted`]: a caller may build again (the daemon's layer
//! cache keeps what was done).

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::BuildInfo;
use futures::{Stream, StreamExt};

use super::{ImageError, inspect_optional, tail};

/// What one build left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The id of the image now under the tag.
    pub id: String,
    /// The build's output, as the daemon sent it.
    pub log: String,
}

/// How a build's response ended, seen from the stream alone.
#[derive(Debug, Default)]
struct Ending {
    log: String,
    /// The image id the daemon announced (`aux.ID`), when it did.
    announced: Option<String>,
    /// An error the daemon reported: the build failed.
    failed: Option<String>,
    /// The client's own failure to read the rest of the response.
    broken: Option<DockerError>,
}

/// The verdict on a build, from how its response ended and the ids under its tag before and
/// after. Pure, so every case is tested alone.
fn verdict(ending: &Ending, before: Option<&str>, after: Option<&str>) -> Result<String, String> {
    let output = tail(ending.log.trim(), 2000);
    if let Some(error) = &ending.failed {
        return Err(format!("{error}\n{output}"));
    }
    let Some(after) = after else {
        let why = match &ending.broken {
            Some(e) => e.to_string(),
            None => "the build ended without the image".to_string(),
        };
        return Err(format!("{why}\n{output}"));
    };
    let announced = ending.announced.as_deref();
    match &ending.broken {
        None => Ok(after.to_string()),
        // The stream broke, but the daemon had announced this very image, or the tag now
        // names another image than before the build: the build finished.
        Some(_) if announced == Some(after) || before != Some(after) => Ok(after.to_string()),
        Some(e) => Err(format!(
            "{e} (and the tag still names the image it named before the build)\n{output}"
        )),
    }
}

/// The error of a build that did not leave its image (pure): interrupted when only the
/// client's reading broke off, failed when the daemon said so or the stream ended cleanly.
fn failure(ending: &Ending, tag: &str, message: String) -> ImageError {
    let image = tag.to_string();
    if ending.failed.is_none() && ending.broken.is_some() {
        ImageError::BuildInterrupted { image, message }
    } else {
        ImageError::Build { image, message }
    }
}

/// Follow the build whose response is `stream` to its end, each non-empty output line to
/// `on_line`, and judge it by the daemon's words and by what `tag` names afterwards.
pub async fn follow_build<S>(
    docker: &Docker,
    tag: &str,
    stream: S,
    mut on_line: impl FnMut(&str),
) -> Result<Built, ImageError>
where
    S: Stream<Item = Result<BuildInfo, DockerError>>,
{
    // The stream sends nothing before it is polled: this is the tag before the build.
    let before = inspect_optional(docker, tag).await?.and_then(|i| i.id);
    let mut ending = Ending::default();
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(text) = info.stream {
                    let line = text.trim_end();
                    if !line.is_empty() {
                        on_line(line);
                    }
                    ending.log.push_str(&text);
                }
                if let Some(id) = info.aux.and_then(|aux| aux.id) {
                    ending.announced = Some(id);
                }
            }
            Err(DockerError::DockerStreamError { error }) => {
                ending.failed = Some(error);
                break;
            }
            Err(e) => {
                ending.broken = Some(e);
                break;
            }
        }
    }
    let after = inspect_optional(docker, tag).await?.and_then(|i| i.id);
    if let Some(e) = &ending.broken {
        tracing::warn!(image = %tag, error = %e, "the build's response broke off; judging the build by its tag");
    }
    match verdict(&ending, before.as_deref(), after.as_deref()) {
        Ok(id) => Ok(Built {
            id,
            log: ending.log,
        }),
        Err(message) => Err(failure(&ending, tag, message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broken() -> DockerError {
        DockerError::IOError {
            err: std::io::Error::other("bytes remaining on stream"),
        }
    }

    fn ending(announced: Option<&str>, failed: Option<&str>, broken_off: bool) -> Ending {
        Ending {
            log: "Step 1/2 : FROM x\n".to_string(),
            announced: announced.map(str::to_string),
            failed: failed.map(str::to_string),
            broken: broken_off.then(broken),
        }
    }

    #[test]
    fn a_clean_end_with_the_image_is_a_build() {
        assert_eq!(
            verdict(
                &ending(Some("sha256:b"), None, false),
                Some("sha256:a"),
                Some("sha256:b")
            ),
            Ok("sha256:b".to_string())
        );
        // A rebuild that changed nothing keeps the id, and is still a build.
        assert_eq!(
            verdict(
                &ending(None, None, false),
                Some("sha256:a"),
                Some("sha256:a")
            ),
            Ok("sha256:a".to_string())
        );
    }

    #[test]
    fn an_error_the_daemon_reported_fails_the_build_whatever_the_tag_says() {
        assert_eq!(
            verdict(
                &ending(
                    None,
                    Some("The command returned a non-zero code: 100"),
                    false
                ),
                Some("sha256:a"),
                Some("sha256:a")
            ),
            Err("The command returned a non-zero code: 100\nStep 1/2 : FROM x".to_string())
        );
    }

    #[test]
    fn a_broken_stream_after_the_tag_moved_is_a_build() {
        // The bollard decoder's failure at the very end: the new image is under the tag.
        assert_eq!(
            verdict(&ending(None, None, true), None, Some("sha256:b")),
            Ok("sha256:b".to_string())
        );
        assert_eq!(
            verdict(
                &ending(None, None, true),
                Some("sha256:a"),
                Some("sha256:b")
            ),
            Ok("sha256:b".to_string())
        );
        // The daemon announced the id it left under the tag (a rebuild from cache).
        assert_eq!(
            verdict(
                &ending(Some("sha256:a"), None, true),
                Some("sha256:a"),
                Some("sha256:a")
            ),
            Ok("sha256:a".to_string())
        );
    }

    #[test]
    fn only_a_broken_stream_is_an_interruption_worth_another_build() {
        let kind = |e: ImageError| match e {
            ImageError::BuildInterrupted { .. } => "interrupted",
            ImageError::Build { .. } => "failed",
            _ => "other",
        };
        assert_eq!(
            kind(failure(&ending(None, None, true), "t", "m".into())),
            "interrupted"
        );
        assert_eq!(
            kind(failure(
                &ending(None, Some("exit 100"), false),
                "t",
                "m".into()
            )),
            "failed"
        );
        assert_eq!(
            kind(failure(&ending(None, None, false), "t", "m".into())),
            "failed"
        );
    }

    #[test]
    fn a_broken_stream_without_a_new_image_fails_with_the_reason() {
        assert_eq!(
            verdict(&ending(None, None, true), None, None),
            Err("bytes remaining on stream\nStep 1/2 : FROM x".to_string())
        );
        assert_eq!(
            verdict(&ending(None, None, true), Some("sha256:a"), Some("sha256:a")),
            Err("bytes remaining on stream (and the tag still names the image it named before the build)\nStep 1/2 : FROM x".to_string())
        );
        assert_eq!(
            verdict(&ending(None, None, false), None, None),
            Err("the build ended without the image\nStep 1/2 : FROM x".to_string())
        );
    }
}
