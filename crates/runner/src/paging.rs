//! Pages of a run's JSONL event log, the same on every backend (the Docker runner reads its
//! `events.jsonl`, the Kubernetes runner a Pod log or the stored, compressed log):
//!
//! * an event is a non-blank line; blank lines are not events and take no offset;
//! * a line that is not JSON is returned as a JSON string;
//! * `limit` is clamped to `1..=`[`MAX_PAGE_EVENTS`] (so `0` asks for one event);
//! * the last line of a log that is still being written is returned only once it is complete
//!   (ends with `\n`); a finished log returns it as it is;
//! * `next_offset` never passes the end: asking beyond the last event gives an empty page whose
//!   `next_offset` is the number of events.
//!
//! The log is read as a stream, so a page costs memory for the page only.

use std::io::BufRead;

use crate::EventPage;

/// The most events one page holds.
pub const MAX_PAGE_EVENTS: usize = 10_000;

/// The page of `log` starting at event `from` (see the module docs). `complete` says the log
/// will not grow any more (the run has ended).
pub fn page(
    mut log: impl BufRead,
    from: u64,
    limit: usize,
    complete: bool,
) -> std::io::Result<EventPage> {
    let limit = limit.clamp(1, MAX_PAGE_EVENTS);
    let mut events = Vec::new();
    let mut index = 0u64;
    let mut end = true;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if log.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        let terminated = buf.last() == Some(&b'\n');
        if !terminated && !complete {
            // The partial last line of a live log: not an event yet.
            break;
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if index < from {
            index += 1;
            continue;
        }
        if events.len() == limit {
            end = false;
            break;
        }
        events.push(serde_json::from_slice(line).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(line).into_owned())
        }));
        index += 1;
    }
    let start = from.min(index - events.len() as u64);
    Ok(EventPage {
        offset: from,
        next_offset: start + events.len() as u64,
        events,
        end,
    })
}

/// An empty last page at `from` (a log that does not exist, or not yet).
pub fn empty(from: u64) -> EventPage {
    EventPage {
        offset: from,
        events: Vec::new(),
        next_offset: from,
        end: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LOG: &str = "{\"type\":\"a\"}\n\nnot json\n  \n{\"type\":\"b\"}\n{\"type\":\"partial";

    fn p(from: u64, limit: usize, complete: bool) -> EventPage {
        page(LOG.as_bytes(), from, limit, complete).unwrap()
    }

    #[test]
    fn pages_skip_blank_lines_and_hold_back_a_partial_line_until_the_end() {
        assert_eq!(
            p(0, 10, false),
            EventPage {
                offset: 0,
                events: vec![
                    json!({"type": "a"}),
                    json!("not json"),
                    json!({"type": "b"})
                ],
                next_offset: 3,
                end: true,
            }
        );
        assert_eq!(
            p(1, 1, false),
            EventPage {
                offset: 1,
                events: vec![json!("not json")],
                next_offset: 2,
                end: false,
            }
        );
        // limit 0 asks for one event.
        assert_eq!(p(0, 0, false).events, vec![json!({"type": "a"})]);
        // A finished log includes its last line even without a newline.
        assert_eq!(
            p(3, 10, true),
            EventPage {
                offset: 3,
                events: vec![json!("{\"type\":\"partial")],
                next_offset: 4,
                end: true,
            }
        );
        // Beyond the end: empty, and the next offset is the end.
        assert_eq!(
            p(99, 10, true),
            EventPage {
                offset: 99,
                events: vec![],
                next_offset: 4,
                end: true,
            }
        );
        assert_eq!(p(99, 10, false).next_offset, 3);
        assert_eq!(
            empty(5),
            EventPage {
                offset: 5,
                events: vec![],
                next_offset: 5,
                end: true
            }
        );
    }
}
