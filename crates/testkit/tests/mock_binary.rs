//! The mock model's binary (`codex-orchestrator-mockmodel`, what the Docker tests run in a
//! container) answers a scripted response over real HTTP on loopback, logs the request as one
//! JSON line on stdout, and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Kills the child if the test fails before stopping it.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Connects within 20 s (the binary may still be starting).
fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("the mock model never listened on {port}: {e}"),
        }
    }
}

fn post(port: u16, body: &Value) -> (String, String) {
    let mut s = connect(port);
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let body = body.to_string();
    write!(
        s,
        "POST /v1/responses HTTP/1.1\r\nHost: mock\r\nAuthorization: Bearer sk-test\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    (head.to_string(), body.to_string())
}

/// The `data:` payloads of an SSE body, in order.
fn sse_data(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("SSE data is JSON"))
        .collect()
}

#[test]
fn binary_serves_a_script() {
    let bin = codex_orchestrator_testkit::bins::mock_model();
    let port = free_port();
    let script = json!([{
        "output": [{"message": "hello from the script"}],
        "usage": {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
    }]);
    let child = Command::new(&bin)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--script", &script.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the mock model");
    let mut child = Kill(child);

    let (head, body) = post(
        port,
        &json!({"model": "gpt-test", "input": [], "stream": true}),
    );
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    let events = sse_data(&body);
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        types,
        [
            "response.created",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let item = &events[1]["item"];
    assert_eq!(item["type"], "message");
    assert_eq!(item["role"], "assistant");
    assert_eq!(item["content"][0]["text"], "hello from the script");
    assert_eq!(events[2]["response"]["usage"]["total_tokens"], 10);

    // The script is exhausted: the next request gets the exhaustion message, not a hang.
    let (_, body) = post(port, &json!({"model": "gpt-test", "input": []}));
    let events = sse_data(&body);
    assert_eq!(
        events[1]["item"]["content"][0]["text"],
        codex_orchestrator_testkit::mockmodel::EXHAUSTED_TEXT
    );

    // SIGTERM stops it with status 0; stdout holds one JSON line per request.
    assert!(send_sigterm(child.0.id()), "SIGTERM delivered");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.0.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "the mock model ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let stdout = child.0.stdout.take().expect("stdout");
    let lines: Vec<Value> = BufReader::new(stdout)
        .lines()
        .map(|l| serde_json::from_str(&l.expect("line")).expect("a JSON log line"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["path"], "/v1/responses");
    assert_eq!(lines[0]["body"]["model"], "gpt-test");
    assert_eq!(lines[0]["served"], 0);
    assert_eq!(lines[1]["exhausted"], true);
}

/// SIGTERM through the `kill` command (the test crate has no signal dependency).
fn send_sigterm(pid: u32) -> bool {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}
