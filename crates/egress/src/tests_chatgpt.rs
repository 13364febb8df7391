//! The proxy with a ChatGPT sign-in, against an in-process mock of the ChatGPT backend and of
//! the token endpoint (one HTTP server, two paths).

use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;

use base64::Engine as _;
use serde_json::{Value, json};

use super::*;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const OLD_ACCESS_SIG: &str = "old-access-signature-0001";
const OLD_REFRESH: &str = "refresh-token-old-0001";
const NEW_REFRESH: &str = "refresh-token-new-0002";
const ACCOUNT: &str = "acc-1234";
/// Requests sent at once in the concurrency tests.
const CONCURRENT: usize = 8;

fn jwt(exp: i64, sig: &str) -> String {
    let b = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{sig}",
        b(json!({"alg": "RS256"})),
        b(json!({"exp": exp}))
    )
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Header names and values of a request.
type Headers = Vec<(String, String)>;

/// What the mock does and saw.
struct Mock {
    /// The access token the backend accepts.
    valid: String,
    /// What the token endpoint answers: the new access token, or an error status and body.
    refresh: Result<String, (u16, Value)>,
    /// (path, headers, body) of every request.
    seen: Vec<(String, Headers, String)>,
}

type Shared = Arc<Mutex<Mock>>;

async fn mock_handler(mock: Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    let auth = headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.clone());
    let (status, answer) = {
        let mut m = mock.lock().unwrap();
        m.seen.push((path.clone(), headers, body));
        match path.as_str() {
            "/oauth/token" => match m.refresh.clone() {
                Ok(new) => {
                    m.valid = new.clone();
                    (
                        200,
                        json!({"access_token": new, "refresh_token": NEW_REFRESH,
                               "id_token": "id-new"})
                        .to_string(),
                    )
                }
                Err((code, body)) => (code, body.to_string()),
            },
            "/backend-api/codex/responses" if auth == Some(format!("Bearer {}", m.valid)) => (
                200,
                "event: response.completed\ndata: {\"ok\":true}\n\n".to_owned(),
            ),
            _ => (401, json!({"detail": "Unauthorized"}).to_string()),
        }
    };
    if path == "/oauth/token" {
        // Slow enough that concurrent requests pile up behind the one refresh.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut resp = Response::new(Full::new(Bytes::from(answer)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    resp
}

struct Env {
    dir: tempfile::TempDir,
    auth_file: std::path::PathBuf,
    token_url: String,
    mock: Shared,
    base: String,
    stop: CancellationToken,
    logs: Arc<Mutex<Vec<u8>>>,
    _log_guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn auth_doc(access: &str) -> Value {
    json!({
        "OPENAI_API_KEY": null,
        "tokens": {"id_token": "id-old", "access_token": access,
                   "refresh_token": OLD_REFRESH, "account_id": ACCOUNT},
        "last_refresh": "2026-01-01T00:00:00Z",
        "kept": {"by": "the write-back"}
    })
}

/// Starts the mock and the proxy (with `access` in auth.json, mode 0640, and the backend
/// accepting `valid`); every log line of the test goes to `logs`, at TRACE.
async fn start(access: &str, valid: &str, refresh: Result<String, (u16, Value)>) -> Env {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = Capture(logs.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();
    let auth_file = dir.path().join("auth.json");
    std::fs::write(&auth_file, auth_doc(access).to_string()).unwrap();
    std::fs::set_permissions(&auth_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mock = Arc::new(Mutex::new(Mock {
        valid: valid.to_owned(),
        refresh,
        seen: Vec::new(),
    }));
    let stop = CancellationToken::new();
    let mock_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mock_addr = mock_listener.local_addr().unwrap();
    let m = mock.clone();
    tokio::spawn(codex_orchestrator_http::serve(
        mock_listener,
        move |req| mock_handler(m.clone(), req),
        ServeOptions::new("mock chatgpt"),
        stop.clone(),
    ));
    let settings = ProxySettings::new(
        &format!("http://{mock_addr}/backend-api/codex"),
        TOKEN,
        None,
        DEFAULT_ALLOWED.iter().map(|s| s.to_string()).collect(),
    )
    .unwrap()
    .with_chatgpt(ChatGptSettings {
        auth_file: auth_file.clone(),
        token_url: format!("http://{mock_addr}/oauth/token"),
    });
    let token_url = format!("http://{mock_addr}/oauth/token");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(settings, listener, stop.clone()));
    Env {
        dir,
        auth_file,
        token_url,
        mock,
        base: format!("http://{addr}"),
        stop,
        logs,
        _log_guard: guard,
    }
}

impl Env {
    async fn post(&self) -> (u16, String) {
        let r = upstream_client()
            .unwrap()
            .post(format!("{}/backend-api/codex/responses", self.base))
            .bearer_auth(TOKEN)
            .header("chatgpt-account-id", "acc-of-the-sandbox")
            .header("session-id", "s-1")
            .body("{}")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn post_concurrently(&self) -> Vec<(u16, String)> {
        futures::future::join_all((0..CONCURRENT).map(|_| self.post())).await
    }

    fn seen(&self, path: &str) -> Vec<(Headers, String)> {
        let m = self.mock.lock().unwrap();
        m.seen
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, h, b)| (h.clone(), b.clone()))
            .collect()
    }

    fn auth_file(&self) -> (Value, u32) {
        let text = std::fs::read_to_string(&self.auth_file).unwrap();
        let mode = std::fs::metadata(&self.auth_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        (serde_json::from_str(&text).unwrap(), mode)
    }

    /// No secret appears in any log line; the directory holds only auth.json.
    fn assert_clean(&self, secrets: &[&str]) {
        let logs = String::from_utf8(self.logs.lock().unwrap().clone()).unwrap();
        assert!(logs.contains("egress proxy"), "the capture works: {logs}");
        for s in secrets
            .iter()
            .chain([&TOKEN, &OLD_REFRESH, &NEW_REFRESH, &ACCOUNT])
        {
            assert!(!logs.contains(s), "`{s}` is logged:\n{logs}");
        }
        let names: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["auth.json"]);
    }
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    h.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[tokio::test]
async fn chatgpt_forwards_with_the_access_token_and_the_account_header() {
    let access = jwt(now() + 3_600, OLD_ACCESS_SIG);
    let env = start(&access, &access, Err((500, json!({})))).await;
    let (status, body) = env.post().await;
    assert_eq!(
        (status, body.contains("response.completed")),
        (200, true),
        "{body}"
    );
    let seen = env.seen("/backend-api/codex/responses");
    assert_eq!(seen.len(), 1);
    let h = &seen[0].0;
    assert_eq!(
        header(h, "authorization"),
        [format!("Bearer {access}").as_str()]
    );
    // The proxy's account header, never the sandbox's.
    assert_eq!(header(h, "chatgpt-account-id"), [ACCOUNT]);
    assert_eq!(header(h, "session-id"), ["s-1"]);
    assert!(!format!("{h:?}").contains(TOKEN));
    // Nothing else is forwarded, and nothing was refreshed.
    let other = upstream_client()
        .unwrap()
        .get(format!("{}/backend-api/wham/usage", env.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
    assert!(env.seen("/oauth/token").is_empty());
    assert_eq!(env.auth_file(), (auth_doc(&access), 0o640));
    env.assert_clean(&[OLD_ACCESS_SIG]);
    env.stop.cancel();
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_for_concurrent_requests_and_written_back() {
    let expired = jwt(now() - 10, OLD_ACCESS_SIG);
    let fresh = jwt(now() + 3_600, "new-access-signature-0002");
    let env = start(&expired, &fresh, Ok(fresh.clone())).await;
    let answers = env.post_concurrently().await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    let refreshes = env.seen("/oauth/token");
    assert_eq!(refreshes.len(), 1, "exactly one refresh");
    let body: Value = serde_json::from_str(&refreshes[0].1).unwrap();
    assert_eq!(
        body,
        json!({"client_id": chatgpt::CLIENT_ID, "grant_type": "refresh_token",
               "refresh_token": OLD_REFRESH, "scope": "openid profile email"})
    );
    assert_eq!(
        header(&refreshes[0].0, "content-type"),
        ["application/json"]
    );
    // The backend saw only the fresh token.
    let seen = env.seen("/backend-api/codex/responses");
    assert_eq!(seen.len(), CONCURRENT);
    let bearer = format!("Bearer {fresh}");
    assert!(
        seen.iter()
            .all(|(h, _)| header(h, "authorization") == [bearer.as_str()])
    );
    // auth.json holds the new tokens, keeps everything else and its mode.
    let (doc, mode) = env.auth_file();
    let mut want = auth_doc(&fresh);
    want["tokens"]["refresh_token"] = json!(NEW_REFRESH);
    want["tokens"]["id_token"] = json!("id-new");
    want["last_refresh"] = doc["last_refresh"].clone();
    assert_eq!((&doc, mode), (&want, 0o640));
    assert_ne!(doc["last_refresh"], json!("2026-01-01T00:00:00Z"));
    env.assert_clean(&[OLD_ACCESS_SIG, "new-access-signature-0002"]);
    env.stop.cancel();
}

#[tokio::test]
async fn a_401_from_the_backend_refreshes_once_and_retries() {
    // Not expired by its claim, but revoked: the backend accepts only the refreshed one.
    let revoked = jwt(now() + 3_600, OLD_ACCESS_SIG);
    let fresh = jwt(now() + 7_200, "new-access-signature-0003");
    let env = start(&revoked, "nothing-yet", Ok(fresh.clone())).await;
    let answers = env.post_concurrently().await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert_eq!(env.seen("/oauth/token").len(), 1);
    let seen = env.seen("/backend-api/codex/responses");
    let with = |t: &str| {
        let b = format!("Bearer {t}");
        seen.iter()
            .filter(|(h, _)| header(h, "authorization") == [b.as_str()])
            .count()
    };
    // Each request was refused once at most with the old token, then sent with the new one.
    assert_eq!(with(&fresh), CONCURRENT);
    assert_eq!(with(&revoked) + with(&fresh), seen.len());
    assert!(
        (1..=CONCURRENT).contains(&with(&revoked)),
        "{}",
        with(&revoked)
    );
    env.assert_clean(&[OLD_ACCESS_SIG, "new-access-signature-0003"]);
    env.stop.cancel();
}

#[tokio::test]
async fn a_refresh_failure_is_a_clear_401_for_every_waiting_request() {
    let expired = jwt(now() - 10, OLD_ACCESS_SIG);
    let env = start(
        &expired,
        "never",
        Err((
            400,
            json!({"error": {"code": "refresh_token_expired", "message": OLD_REFRESH}}),
        )),
    )
    .await;
    let answers = env.post_concurrently().await;
    let want = json!({"error": {
        "message": "egress proxy: the ChatGPT sign-in could not be refreshed: the token endpoint \
                    answered 400 Bad Request (refresh_token_expired); sign in again with \
                    `codex login` on the host",
        "type": "egress_proxy"}});
    for (status, body) in &answers {
        assert_eq!(
            (*status, serde_json::from_str::<Value>(body).unwrap()),
            (401, want.clone())
        );
    }
    // One refresh attempt (the others got its remembered error); the backend never called;
    // auth.json untouched.
    assert_eq!(env.seen("/oauth/token").len(), 1);
    assert!(env.seen("/backend-api/codex/responses").is_empty());
    assert_eq!(env.auth_file(), (auth_doc(&expired), 0o640));
    env.assert_clean(&[OLD_ACCESS_SIG]);
    env.stop.cancel();
}

#[tokio::test]
async fn an_unusable_auth_file_stops_the_proxy_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.json");
    let settings = |f: &std::path::Path| {
        ProxySettings::new(
            "http://x/backend-api/codex",
            TOKEN,
            None,
            vec!["responses".into()],
        )
        .unwrap()
        .with_chatgpt(ChatGptSettings {
            auth_file: f.to_owned(),
            token_url: "http://x/oauth/token".into(),
        })
    };
    let run = |s: ProxySettings| async move {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        serve(s, l, CancellationToken::new())
            .await
            .unwrap_err()
            .to_string()
    };
    let missing = run(settings(&file)).await;
    assert!(
        missing.starts_with("cannot read the ChatGPT sign-in"),
        "{missing}"
    );
    std::fs::write(&file, r#"{"OPENAI_API_KEY": "sk-secret-value"}"#).unwrap();
    let api_key = run(settings(&file)).await;
    assert_eq!(
        api_key,
        format!(
            "the ChatGPT sign-in {} is not usable: it holds no ChatGPT tokens (an API-key login? \
             use `[auth] mode = \"api_key\"`) (sign in with `codex login` and point the \
             orchestrator at that auth.json)",
            file.display()
        )
    );
}

/// Two proxies (two runs) on the same auth.json with an expired token: one refresh in all,
/// the other proxy takes the refreshed token from the file.
#[tokio::test]
async fn two_proxies_on_one_auth_file_refresh_once() {
    let expired = jwt(now() - 10, OLD_ACCESS_SIG);
    let fresh = jwt(now() + 3_600, "new-access-signature-0004");
    let env = start(&expired, &fresh, Ok(fresh.clone())).await;
    let second = ChatGptAuth::load(
        &ChatGptSettings {
            auth_file: env.auth_file.clone(),
            token_url: env.token_url.clone(),
        },
        upstream_client().unwrap(),
    )
    .unwrap();
    let (first, other) = tokio::join!(env.post_concurrently(), async {
        futures::future::join_all((0..CONCURRENT).map(|_| second.current())).await
    });
    assert!(first.iter().all(|(s, _)| *s == 200), "{first:?}");
    for c in other {
        assert_eq!(c.unwrap().access_token, fresh);
    }
    assert_eq!(env.seen("/oauth/token").len(), 1, "one refresh across both");
    assert_eq!(
        env.auth_file().0["tokens"]["refresh_token"],
        json!(NEW_REFRESH)
    );
    env.assert_clean(&[OLD_ACCESS_SIG, "new-access-signature-0004"]);
    env.stop.cancel();
}

/// Runs the real codex (the cached 0.147.0 binary, on the host, no Docker) once through a
/// proxy signed in with `access`: codex speaks to the proxy at the ChatGPT backend's path with
/// the per-run token, exactly as the runner configures the sandbox's codex
/// (crates/runner/src/docker/spec.rs, `chatgpt_egress_plan`); the scripted mock model stands in
/// for the ChatGPT backend and accepts only `access`. The token endpoint is a closed port.
/// Returns codex's exit success, its stdout and the mock's request log.
async fn real_codex_run(access: &str) -> (bool, String, Vec<Value>) {
    use codex_orchestrator_testkit::mockmodel::{self, MockScript};
    let codex = tokio::task::spawn_blocking(codex_orchestrator_testkit::codex_bin)
        .await
        .unwrap();
    let script: MockScript = serde_json::from_value(json!({
        "responses": [{"output": [{"message": "signed in"}]}],
        "expected_api_key": access,
    }))
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let mock = mockmodel::spawn(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        script,
        move |e| sink.lock().unwrap().push(e.clone()),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let auth_file = dir.path().join("auth.json");
    std::fs::write(&auth_file, auth_doc(access).to_string()).unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let settings = ProxySettings::new(
        &format!("http://{}/backend-api/codex", mock.addr()),
        TOKEN,
        None,
        DEFAULT_ALLOWED.iter().map(|s| s.to_string()).collect(),
    )
    .unwrap()
    .with_chatgpt(ChatGptSettings {
        auth_file,
        token_url: format!("http://{closed_addr}/oauth/token"),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve(settings, listener, stop.clone()));
    let (home, ws) = (dir.path().join("home"), dir.path().join("ws"));
    std::fs::create_dir_all(home.join(".codex")).unwrap();
    std::fs::create_dir_all(&ws).unwrap();
    let provider = format!(
        "model_providers.openai-via-proxy={{name=\"openai-via-proxy\", \
         base_url=\"http://{proxy}/backend-api/codex\", env_key=\"CODEX_ORCHESTRATOR_MODEL_TOKEN\", \
         wire_api=\"responses\", request_max_retries=0, stream_max_retries=0}}"
    );
    let run = tokio::process::Command::new(codex)
        .args(["exec", "--json", "-C"])
        .arg(&ws)
        .args([
            "-m",
            "gpt-5.5",
            "-c",
            "model_provider=openai-via-proxy",
            "-c",
        ])
        .arg(provider)
        .args([
            "--disable",
            "plugins",
            "-c",
            "analytics.enabled=false",
            "--dangerously-bypass-approvals-and-sandbox",
            "--skip-git-repo-check",
            "--",
            "Say hello.",
        ])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &home)
        .env("CODEX_HOME", home.join(".codex"))
        .env("CODEX_ORCHESTRATOR_MODEL_TOKEN", TOKEN)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("codex finished within 120 s")
        .unwrap();
    stop.cancel();
    mock.shutdown().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), stdout, seen)
}

/// A real codex run succeeds through the ChatGPT sign-in: the backend saw the access token and
/// the account header, never the run's token.
#[tokio::test]
async fn a_real_codex_run_succeeds_through_the_chatgpt_sign_in() {
    let access = jwt(now() + 3_600, "real-run-access-signature-0005");
    let (ok, stdout, seen) = real_codex_run(&access).await;
    assert!(ok, "{stdout}");
    assert!(stdout.contains("\"signed in\""), "{stdout}");
    assert!(stdout.contains("turn.completed"), "{stdout}");
    let turns: Vec<&Value> = seen
        .iter()
        .filter(|e| e["path"] == "/backend-api/codex/responses")
        .collect();
    assert_eq!(turns.len(), 1, "{seen:#?}");
    assert_eq!(turns[0]["authorized"], json!(true));
    assert_eq!(turns[0]["headers"][chatgpt::ACCOUNT_HEADER], json!(ACCOUNT));
    assert!(!serde_json::to_string(&seen).unwrap().contains(TOKEN));
}

/// An expired sign-in whose refresh fails: codex's run fails with the proxy's message, and the
/// backend is never asked.
#[tokio::test]
async fn a_real_codex_run_ends_with_the_refresh_failure() {
    let expired = jwt(now() - 10, "real-run-access-signature-0006");
    let (ok, stdout, seen) = real_codex_run(&expired).await;
    assert!(!ok, "{stdout}");
    assert!(
        stdout.contains(
            "the ChatGPT sign-in could not be refreshed: the token endpoint is unreachable"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("sign in again with `codex login` on the host"),
        "{stdout}"
    );
    assert!(
        seen.iter()
            .all(|e| e["path"] != "/backend-api/codex/responses"),
        "{seen:#?}"
    );
}
