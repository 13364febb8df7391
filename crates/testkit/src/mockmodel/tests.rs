//! Unit tests of the parent module.

use super::*;

#[test]
fn script_forms_and_validation() {
    let s = MockScript::parse(
        r#"[{"output":[{"message":"hi"},{"exec":"ls","yield_time_ms":500},{"apply_patch":"*** Begin Patch\n*** End Patch\n"},{"reasoning":"think"},{"type":"web_search_call","id":"ws_1","status":"completed","action":{"type":"search","query":"q"}}],"usage":{"input_tokens":5}},{"http_status":401,"body":{"error":{"message":"bad key"}}},{"hang":true},{"cut_after_items":true,"output":[{"message":"x"}]}]"#,
    )
    .unwrap();
    assert_eq!(s.responses.len(), 4);
    assert_eq!(
        s.responses[0].output[1],
        ScriptItem::Exec {
            exec: "ls".into(),
            yield_time_ms: Some(500),
            workdir: None
        }
    );
    assert!(matches!(s.responses[0].output[4], ScriptItem::Raw(_)));
    let full = MockScript::parse(r#"{"responses":[],"expected_api_key":"k"}"#).unwrap();
    assert_eq!(full.expected_api_key.as_deref(), Some("k"));
    for bad in [
        r#"[{"http_status":401,"output":[{"message":"x"}]}]"#,
        r#"[{"body":{}}]"#,
        r#"[{"output":[{"no_type":1}]}]"#,
        r#"[{"outptu":[]}]"#,
        r#"{"nope":1}"#,
    ] {
        assert!(MockScript::parse(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn sse_shapes_match_the_fixture_readme() {
    let r = ScriptedResponse {
        output: vec![
            ScriptItem::Message {
                message: "Hello!".into(),
            },
            ScriptItem::Exec {
                exec: "ls".into(),
                yield_time_ms: None,
                workdir: None,
            },
        ],
        usage: Some(json!({"input_tokens": 1200})),
        ..Default::default()
    };
    assert_eq!(
        sse_events(&r, 1),
        vec![
            json!({"type":"response.created","response":{"id":"resp_mock_1","status":"in_progress"}}),
            json!({"type":"response.output_item.done","output_index":0,"item":{"type":"message","role":"assistant","id":"resp_mock_1_item_0","status":"completed","content":[{"type":"output_text","text":"Hello!","annotations":[]}]}}),
            json!({"type":"response.output_item.done","output_index":1,"item":{"type":"function_call","id":"resp_mock_1_item_1","call_id":"call_resp_mock_1_1","name":"exec_command","arguments":"{\"cmd\":\"ls\"}","status":"completed"}}),
            json!({"type":"response.completed","response":{"id":"resp_mock_1","status":"completed","usage":{"input_tokens":1200}}}),
        ]
    );
    let failed = ScriptedResponse {
        failed: Some(json!({"code":"server_error","message":"boom"})),
        ..Default::default()
    };
    assert_eq!(
        sse_events(&failed, 2).last(),
        Some(
            &json!({"type":"response.failed","response":{"id":"resp_mock_2","status":"failed","error":{"code":"server_error","message":"boom"}}})
        )
    );
    let cut = ScriptedResponse {
        cut_after_items: true,
        ..ScriptedResponse::items(vec![ScriptItem::Message {
            message: "m".into(),
        }])
    };
    assert_eq!(sse_events(&cut, 3).len(), 2);
    assert_eq!(
        sse_frame(&json!({"type":"response.created"})),
        "event: response.created\ndata: {\"type\":\"response.created\"}\n\n"
    );
}

#[tokio::test]
async fn request_parsing_content_length_and_chunked() {
    let raw = b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nAuthorization: Bearer sk-12345\r\n\r\n{\"a\":1}";
    let mut r: &[u8] = raw;
    let req = read_request(&mut r).await.unwrap().unwrap();
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/v1/responses")
    );
    assert_eq!(req.body, b"{\"a\":1}");
    let entry = log_entry(&req, 1, Some(0), false, Some("sk-12345"));
    assert_eq!(
        entry,
        json!({"seq":1,"method":"POST","path":"/v1/responses","headers":{"host":"x","content-length":"7","authorization":"Bearer <redacted:8 chars>"},"body":{"a":1},"served":0,"exhausted":false,"authorized":true})
    );
    let raw = b"POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
    let mut r: &[u8] = raw;
    assert_eq!(read_request(&mut r).await.unwrap().unwrap().body, b"abcde");
    let mut empty: &[u8] = b"";
    assert!(read_request(&mut empty).await.unwrap().is_none());
    let mut bad: &[u8] = b"GARBAGE\r\n\r\n";
    assert!(read_request(&mut bad).await.is_err());
}

async fn send(addr: SocketAddr, raw: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    s
}

async fn read_all(mut s: TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8(out).unwrap()
}

fn post(body: &str) -> String {
    format!(
        "POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong-key\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn serves_over_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = log.clone();
    let mut script = MockScript::parse(
        r#"[{"http_status":429,"body":{"error":{"message":"slow down"}}},{"hang":true},{"cut_after_items":true,"output":[{"message":"partial"}]}]"#,
    )
    .unwrap();
    script.expected_api_key = Some("right-key".into());
    let h = spawn(listener, script, move |e| {
        sink.lock().unwrap().push(e.clone())
    })
    .unwrap();

    let health = read_all(send(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await).await;
    assert!(
        health.starts_with("HTTP/1.0 200 OK\r\n") && health.ends_with("\r\n\r\nok\n"),
        "{health}"
    );
    let missing = read_all(send(addr, "GET /v1/models HTTP/1.1\r\n\r\n").await).await;
    assert!(
        missing.starts_with("HTTP/1.0 404 Not Found\r\n"),
        "{missing}"
    );

    let limited = read_all(send(addr, &post(r#"{"model":"m","instructions":"abc","tools":[{"type":"function","name":"f","parameters":{}}]}"#)).await).await;
    assert!(
        limited.starts_with("HTTP/1.0 429 Too Many Requests\r\n"),
        "{limited}"
    );
    assert!(
        limited.ends_with(r#"{"error":{"message":"slow down"}}"#),
        "{limited}"
    );

    // The hanging response sends response.created, then nothing.
    let mut hung = send(addr, &post("{}")).await;
    let mut got = Vec::new();
    for _ in 0..100 {
        let mut b = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), hung.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        got.extend_from_slice(&b[..n]);
        if String::from_utf8_lossy(&got).contains("response.created") || n == 0 {
            break;
        }
    }
    let got = String::from_utf8_lossy(&got).into_owned();
    assert!(
        got.ends_with("event: response.created\ndata: {\"response\":{\"id\":\"resp_mock_2\",\"status\":\"in_progress\"},\"type\":\"response.created\"}\n\n"),
        "{got}"
    );

    let cut = read_all(send(addr, &post("{}")).await).await;
    assert!(
        cut.contains("event: response.output_item.done\n") && !cut.contains("response.completed"),
        "{cut}"
    );
    let exhausted = read_all(send(addr, &post("{}")).await).await;
    assert!(
        exhausted.contains(EXHAUSTED_TEXT) && exhausted.contains("event: response.completed\n"),
        "{exhausted}"
    );
    assert_eq!(h.requests_served(), 4);

    // Stopping the server ends the hung connection.
    h.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), hung.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);

    let log = log.lock().unwrap();
    let summary: Vec<(Value, Value, Value, Option<Value>)> = log
        .iter()
        .map(|e| {
            (
                e["path"].clone(),
                e["served"].clone(),
                e["exhausted"].clone(),
                e.get("authorized").cloned(),
            )
        })
        .collect();
    let f = Some(json!(false));
    assert_eq!(
        summary,
        vec![
            (json!("/healthz"), Value::Null, json!(false), f.clone()),
            (json!("/v1/models"), Value::Null, json!(false), f.clone()),
            (json!("/v1/responses"), json!(0), json!(false), f.clone()),
            (json!("/v1/responses"), json!(1), json!(false), f.clone()),
            (json!("/v1/responses"), json!(2), json!(false), f.clone()),
            (json!("/v1/responses"), Value::Null, json!(true), f),
        ]
    );
    assert_eq!(
        log[2]["body"],
        json!({"model":"m","instructions":"…[3 chars]","tools":[{"type":"function","name":"f"}]})
    );
    assert_eq!(
        log[2]["headers"]["authorization"],
        json!("Bearer <redacted:9 chars>")
    );
}
