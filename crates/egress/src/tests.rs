//! Unit tests of the parent module.

use super::*;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn settings(upstream: &str) -> ProxySettings {
    ProxySettings::new(
        upstream,
        TOKEN,
        Some("sk-real".into()),
        DEFAULT_ALLOWED.iter().map(|s| s.to_string()).collect(),
    )
    .unwrap()
}

fn bearer() -> Vec<u8> {
    format!("Bearer {TOKEN}").into_bytes()
}

#[test]
fn settings_parse_and_refuse() {
    assert_eq!(
        settings("https://api.openai.com/v1/"),
        ProxySettings {
            origin: "https://api.openai.com".into(),
            base_path: "/v1".into(),
            token: TOKEN.into(),
            api_key: Some("sk-real".into()),
            allowed: vec!["responses".into(), "models".into()],
            run_key: None,
            chatgpt: None,
            budget: budget::Budget::default(),
            price: None,
        }
    );
    assert_eq!(settings("http://mock:8080").base_path, "");
    for bad in [
        "ftp://x/v1",
        "api.openai.com/v1",
        "https://user:pw@x/v1",
        "https:///v1",
        "https://x/v1?a=b",
    ] {
        let e = ProxySettings::new(bad, TOKEN, None, vec!["responses".into()]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("proxy setting {ENV_UPSTREAM}: ")),
            "{bad}: {e}"
        );
    }
    let e =
        ProxySettings::new("https://x/v1", "short", None, vec!["responses".into()]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "proxy setting CODEX_ORCHESTRATOR_PROXY_TOKEN: the token must be at least 16 characters"
    );
    assert!(ProxySettings::new("https://x", TOKEN, None, vec!["../x".into()]).is_err());
    // The debug form never shows the secrets.
    let shown = format!("{:?}", settings("https://x/v1"));
    assert!(
        !shown.contains(TOKEN) && !shown.contains("sk-real"),
        "{shown}"
    );
}

#[test]
fn routes() {
    let s = settings("https://api.openai.com/v1");
    let auth = bearer();
    let post = |pq: &str, a: Option<&[u8]>| route(&s, &Method::POST, pq, a);
    assert_eq!(
        post("/v1/responses", Some(&auth)),
        Route::Forward("https://api.openai.com/v1/responses".into())
    );
    assert_eq!(
        route(
            &s,
            &Method::GET,
            "/v1/models?client_version=0.147.0",
            Some(&auth)
        ),
        Route::Forward("https://api.openai.com/v1/models?client_version=0.147.0".into())
    );
    assert_eq!(
        post("/v1/responses/compact", Some(&auth)),
        Route::Forward("https://api.openai.com/v1/responses/compact".into())
    );
    let forbidden = Route::Reject(
        StatusCode::FORBIDDEN,
        "egress proxy: this destination is not allowed from the sandbox".into(),
    );
    for pq in [
        "/v1/files",
        "/v1/responsesx",
        "/v2/responses",
        "/responses",
        "/v1/responses/../files",
        "/v1/responses/%2e%2e/files",
        "/v1//responses",
        "/",
        "http://evil.example/v1/responses",
    ] {
        assert_eq!(post(pq, Some(&auth)), forbidden, "{pq}");
    }
    let unauthorized = Route::Reject(
        StatusCode::UNAUTHORIZED,
        "egress proxy: unauthorized".into(),
    );
    assert_eq!(post("/v1/responses", None), unauthorized);
    assert_eq!(post("/v1/responses", Some(b"Bearer sk-real")), unauthorized);
    assert_eq!(
        post("/v1/responses", Some(format!("Bearer {TOKEN}x").as_bytes())),
        unauthorized
    );
    assert_eq!(post("/v1/responses", Some(TOKEN.as_bytes())), unauthorized);
    assert_eq!(
        route(&s, &Method::DELETE, "/v1/responses", Some(&auth)),
        Route::Reject(
            StatusCode::METHOD_NOT_ALLOWED,
            "egress proxy: only GET and POST are forwarded".into()
        )
    );
}

/// Headers as codex 0.147 sends them (crates/testkit/fixtures/codex-exec-0.147/a-plain-answer/
/// requests.jsonl) plus what a hostile sandbox adds.
fn sandbox_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "model-proxy:8080"),
        ("authorization", "Bearer 0123456789abcdef0123456789abcdef"),
        ("content-length", "7"),
        ("connection", "keep-alive"),
        ("accept", "text/event-stream"),
        ("content-type", "application/json"),
        ("openai-beta", "responses=experimental"),
        ("originator", "codex_exec"),
        ("session-id", "s-1"),
        ("thread-id", "t-1"),
        ("user-agent", "codex_exec/0.147.0"),
        ("version", "0.147.0"),
        ("x-client-request-id", "r-1"),
        ("x-codex-beta-features", "remote_compaction_v2"),
        ("x-codex-turn-metadata", "{}"),
        ("x-codex-window-id", "w-1"),
        // Set by the sandbox: none of these may reach the model API.
        ("openai-organization", "org-other"),
        ("openai-project", "proj-other"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-host", "evil.example"),
        ("forwarded", "for=10.0.0.1"),
        ("cookie", "session=abc"),
        ("api-key", "sk-stolen"),
        ("proxy-authorization", "Basic eDp5"),
        ("x-real-ip", "10.0.0.1"),
        ("upgrade", "websocket"),
        ("te", "trailers"),
        ("x-custom", "1"),
    ] {
        h.append(
            header::HeaderName::from_static(k),
            HeaderValue::from_static(v),
        );
    }
    h
}

#[test]
fn only_allowlisted_headers_and_the_real_key_go_upstream() {
    let out = upstream_headers(&sandbox_headers(), Some("sk-real"));
    let got: Vec<(String, String)> = out
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    let mut got = got;
    got.sort();
    let want: Vec<(String, String)> = [
        ("accept", "text/event-stream"),
        ("authorization", "Bearer sk-real"),
        ("content-type", "application/json"),
        ("openai-beta", "responses=experimental"),
        ("originator", "codex_exec"),
        ("session-id", "s-1"),
        ("thread-id", "t-1"),
        ("user-agent", "codex_exec/0.147.0"),
        ("version", "0.147.0"),
        ("x-client-request-id", "r-1"),
        ("x-codex-beta-features", "remote_compaction_v2"),
        ("x-codex-turn-metadata", "{}"),
        ("x-codex-window-id", "w-1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(got, want);
    assert!(out[header::AUTHORIZATION].is_sensitive());
    // Without a key (a gateway that needs none), no authorization at all: never the token.
    let out = upstream_headers(&sandbox_headers(), None);
    assert_eq!(out.len(), want.len() - 1);
    assert!(!out.contains_key(header::AUTHORIZATION));
    // The allowlist is lowercase and sorted, so the table in the docs can be read off it.
    let mut sorted = FORWARDED_REQUEST_HEADERS.to_vec();
    sorted.sort();
    assert_eq!(sorted, FORWARDED_REQUEST_HEADERS);
    assert!(
        FORWARDED_REQUEST_HEADERS
            .iter()
            .all(|h| h.chars().all(|c| !c.is_ascii_uppercase()))
    );
}

#[test]
fn constant_time_compare() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"abcd"));
    assert!(!constant_time_eq(b"", b"a"));
    assert!(constant_time_eq(b"", b""));
}

#[tokio::test]
async fn forwards_with_the_real_key_and_streams_back() {
    use codex_orchestrator_testkit::mockmodel::MockScript;
    // The scripted mock model as the upstream, expecting the real key.
    let script: MockScript = serde_json::from_value(serde_json::json!({
        "responses": [{"output": [{"message": "hi"}]}],
        "expected_api_key": "sk-real"
    }))
    .unwrap();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = log.clone();
    let mock_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mock = codex_orchestrator_testkit::mockmodel::spawn(mock_listener, script, move |e| {
        sink.lock().unwrap().push(e.clone());
    })
    .unwrap();
    let upstream = format!("http://{}/v1", mock.addr());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve(settings(&upstream), listener, stop.clone()));
    let client = upstream_client().unwrap();
    let base = format!("http://{addr}");
    let ok = client
        .post(format!("{base}/v1/responses"))
        .bearer_auth(TOKEN)
        .header("OpenAI-Organization", "org-other")
        .header("OpenAI-Project", "proj-other")
        .header("X-Forwarded-For", "10.0.0.1")
        .header("Cookie", "a=b")
        .header("session-id", "s-1")
        .json(&serde_json::json!({"model": "gpt-5.5", "input": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let text = ok.text().await.unwrap();
    assert!(text.contains("event: response.completed"), "{text}");
    assert!(text.contains("\"hi\""), "{text}");
    let refused = client
        .post(format!("{base}/v1/files"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let wrong = client
        .post(format!("{base}/v1/responses"))
        .bearer_auth("sk-real")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // The upstream saw exactly one request, authorised with the real key, and never the
    // sandbox's token.
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0]["authorized"], serde_json::json!(true));
    // The whole header set that reached the model API: the allowlisted ones, the real key and
    // what the HTTP client itself sets.
    let mut names: Vec<&str> = log[0]["headers"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "accept",
            "authorization",
            "content-length",
            "content-type",
            "host",
            "session-id"
        ],
        "{log:#?}"
    );
    assert!(!serde_json::to_string(&log).unwrap().contains(TOKEN));
    stop.cancel();
    server.await.unwrap().unwrap();
    mock.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_with_a_message() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A port nothing listens on.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve(
        settings(&format!("http://{dead_addr}/v1")),
        listener,
        stop.clone(),
    ));
    let resp = upstream_client()
        .unwrap()
        .post(format!("http://{addr}/v1/responses"))
        .bearer_auth(TOKEN)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "egress_proxy");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("egress proxy: the model API is unreachable"),
        "{v}"
    );
    stop.cancel();
    server.await.unwrap().unwrap();
}

#[test]
fn the_tls_client_builds_with_system_roots() {
    upstream_client().unwrap();
}

/// The in-cluster proxy with a run key accepts each run's own derived token until it expires,
/// and nothing derived from another key, altered or expired; the shared token still works.
#[test]
fn per_run_tokens_from_the_run_key() {
    use codex_orchestrator_core::runtoken::derive;
    const KEY: &str = "run-key-0123456789abcdef0123456789";
    let s = settings("https://api.openai.com/v1")
        .with_run_key(KEY)
        .unwrap();
    let uid = "0a1b2c3d-0000-4000-8000-000000000000";
    let ok = derive(KEY.as_bytes(), uid, 2_000).unwrap();
    let other_key = derive(b"another-key-0123456789abcdef01234", uid, 2_000).unwrap();
    let call = |t: &str, now| {
        route_at(
            &s,
            &Method::POST,
            "/v1/responses",
            Some(format!("Bearer {t}").as_bytes()),
            now,
        )
    };
    let forward = Route::Forward("https://api.openai.com/v1/responses".into());
    let denied = Route::Reject(
        StatusCode::UNAUTHORIZED,
        "egress proxy: unauthorized".into(),
    );
    assert_eq!(call(&ok, 1_999), forward);
    assert_eq!(call(&ok, 2_000), denied);
    assert_eq!(call(&other_key, 0), denied);
    assert_eq!(call(&ok.replacen(".2000.", ".9999.", 1), 0), denied);
    assert_eq!(call(TOKEN, 5_000), forward);
    // Without a run key, derived tokens are nothing.
    let plain = settings("https://api.openai.com/v1");
    assert!(!authorized(&plain, ok.as_bytes(), 0));
    // A short key is refused; the debug form hides it.
    assert_eq!(
        settings("https://x")
            .with_run_key("short")
            .unwrap_err()
            .to_string(),
        "proxy setting CODEX_ORCHESTRATOR_PROXY_RUN_KEY: the key must be at least 32 characters"
    );
    assert!(!format!("{s:?}").contains(KEY));
}

/// A TLS upstream whose certificate a private CA signed (as a TLS-inspecting proxy re-signs
/// every site): reached with that CA as the extra bundle, refused without it. Returns the
/// CA's PEM and the port.
async fn tls_upstream_of_a_private_ca() -> (String, u16) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (ca_cert.pem(), port)
}

#[tokio::test]
async fn the_upstream_is_trusted_through_the_extra_ca_bundle_only() {
    let (ca_pem, port) = tls_upstream_of_a_private_ca().await;
    let url = format!("https://localhost:{port}/v1/models");
    let trusting = upstream_client_with(Some(ca_pem.as_bytes()), true).unwrap();
    let resp = trusting.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "ok");
    let system_only = upstream_client_with(None, true).unwrap();
    let e = system_only.get(&url).send().await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    // A bundle without a certificate is a setting error, not an empty trust store.
    assert_eq!(
        upstream_client_with(Some(b"not a certificate"), false)
            .unwrap_err()
            .to_string(),
        "proxy setting CODEX_ORCHESTRATOR_PROXY_EXTRA_CA: the bundle holds no certificate"
    );
}

/// The budget: the proxy reads each answer's usage as it streams past and refuses the model
/// request that would pass the run's token budget (`429`, `insufficient_quota`, type
/// `budget_exhausted`), before it reaches the model.
#[tokio::test]
async fn the_request_that_would_pass_the_token_budget_never_reaches_the_model() {
    use codex_orchestrator_testkit::mockmodel::MockScript;
    let usage =
        serde_json::json!({"input_tokens": 1000, "output_tokens": 100, "total_tokens": 1100});
    let script: MockScript = serde_json::from_value(serde_json::json!({
        "responses": [
            {"output": [{"message": "one"}], "usage": usage},
            {"output": [{"message": "two"}], "usage": usage}
        ],
        "expected_api_key": "sk-real"
    }))
    .unwrap();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = log.clone();
    let mock = codex_orchestrator_testkit::mockmodel::spawn(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        script,
        move |e| sink.lock().unwrap().push(e.clone()),
    )
    .unwrap();
    let mut s = settings(&format!("http://{}/v1", mock.addr()));
    s.budget = budget::Budget {
        max_tokens: Some(1500),
        max_model_requests: None,
        max_wall_secs: None,
        max_cost_cents: None,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve(s, listener, stop.clone()));
    let client = upstream_client().unwrap();
    let post = || {
        client
            .post(format!("http://{addr}/v1/responses"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"model": "gpt-5.5", "input": []}))
            .send()
    };
    let first = post().await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.text().await.unwrap().contains("\"one\""));
    // 1100 used; the next request takes at least the 1000 input tokens of the last: refused.
    let second = post().await.unwrap();
    assert_eq!(second.status(), 429);
    assert_eq!(
        second.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"error": {
            "message": "budget exhausted: 1100 of 1500 tokens used, and the next request would take at least 1000 more",
            "type": "budget_exhausted", "code": "insufficient_quota"}})
    );
    // Listing models is no model request: not counted, not refused.
    let models = client
        .get(format!("http://{addr}/v1/models"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_ne!(models.status(), 429);
    let posts = log
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e["method"] == "POST")
        .count();
    assert_eq!(posts, 1, "the refused request reached the model");
    stop.cancel();
    server.await.unwrap().unwrap();
    mock.shutdown().await.unwrap();
}
